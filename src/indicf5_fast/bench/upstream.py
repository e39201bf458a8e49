"""The upstream baseline: ``f5-tts``'s own ``CFM.sample`` (eager, float32) and the ``vocos``
package's decoder, loaded with the same checkpoint tensors as our engine, run in-process.

Upstream's modules import torchaudio (and vocos imports encodec) at module level, neither of
which this project installs; nothing on the measured path calls them. Minimal stand-ins are put
into ``sys.modules`` before the import (only where the real package is absent), as the test
oracle does. The reference audio is our front end's output (clipped, RMS-raised 24 kHz wave and
its log-mel, which equals upstream's ``MelSpec``): upstream's own preprocessing needs pydub and
ffmpeg and costs milliseconds, so the baseline's front-end time is the mel alone.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from indicf5_fast.model.checkpoint import Checkpoint

HOP = 256


def upstream_default_dtype(device: str | torch.device) -> str:
    """The dtype upstream's ``load_checkpoint`` picks by itself: float16 on CUDA GPUs of compute
    capability >= 7, else float32."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 7:
        return "float16"
    return "float32"


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = sys.modules.get(name)
    if mod is None:
        mod = types.ModuleType(name)
        sys.modules[name] = mod
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


class _MelSpectrogramStandIn(nn.Module):
    """Holds the buffers vocos's ``MelSpectrogramFeatures`` registers (``spectrogram.window``,
    ``mel_scale.fb``) so its state_dict loads; decode never calls it."""

    def __init__(self, sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, **_):
        super().__init__()
        self.spectrogram, self.mel_scale = nn.Module(), nn.Module()
        self.spectrogram.register_buffer("window", torch.hann_window(n_fft))
        self.mel_scale.register_buffer("fb", torch.zeros(n_fft // 2 + 1, n_mels))

    def forward(self, wave):  # pragma: no cover - the baseline passes mels, never waves
        raise NotImplementedError("torchaudio stand-in: pass a mel to CFM.sample")


def _install_stubs() -> None:
    try:
        ta = importlib.import_module("torchaudio")
    except Exception:  # absent, or a build that does not load (e.g. a mismatched torch): stand in
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
        ta = _stub("torchaudio")
    if getattr(ta, "__file__", None) is not None:  # the real package
        # vocos.heads imports these private helpers (IMDCT heads only); recent torchaudio
        # releases may not have them: the 24 kHz mel head never calls them
        try:
            fn = importlib.import_module("torchaudio.functional.functional")
            for name in ("_hz_to_mel", "_mel_to_hz"):
                if not hasattr(fn, name):
                    setattr(fn, name, None)
        except Exception:
            pass
    else:  # a stand-in (ours or another's): complete it
        ta.transforms = _stub("torchaudio.transforms")
        if not hasattr(ta.transforms, "MelSpectrogram"):
            ta.transforms.MelSpectrogram = _MelSpectrogramStandIn
        ta.functional = _stub("torchaudio.functional")
        fn = _stub("torchaudio.functional.functional")
        for name in ("_hz_to_mel", "_mel_to_hz"):
            if not hasattr(fn, name):
                setattr(fn, name, None)
        ta.functional.functional = fn
    try:
        importlib.import_module("encodec")
    except ImportError:
        _stub("encodec", EncodecModel=None)
    try:
        importlib.import_module("librosa.filters")
    except ImportError:
        _stub("librosa")
        _stub("librosa.filters", mel=None)
    if "f5_tts.model.trainer" not in sys.modules:
        _stub("f5_tts.model.trainer", Trainer=None)  # wandb/accelerate/datasets: training only


def upstream_unavailable_reason() -> str | None:
    """None when the baseline can run, else why not (for an 'unavailable' row)."""
    try:
        _install_stubs()
        importlib.import_module("f5_tts.model")
        importlib.import_module("f5_tts.model.utils")
        importlib.import_module("vocos")
    except Exception as e:  # any import failure just disables the baseline rows
        return f"upstream f5-tts/vocos not importable: {type(e).__name__}: {e}"
    return None


_VOCOS_YAML = """
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {{sample_rate: {sr}, n_fft: {n_fft}, hop_length: {hop}, n_mels: {mels}, padding: center}}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {{input_channels: {mels}, dim: {dim}, intermediate_dim: {inter}, num_layers: {layers}}}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {{dim: {dim}, n_fft: {n_fft}, hop_length: {hop}, padding: center}}
"""


@dataclass
class UpstreamOutput:
    wave: torch.Tensor  # [ns] float32
    mel: torch.Tensor  # [n_gen, 100] generated frames (reference frames dropped)
    stages: dict[str, float]  # seconds: frontend, dit (CFM.sample incl. its text embedding), vocoder
    passes: list[tuple[int, int]]  # (batch, frames) of every DiT call


class UpstreamPipeline:
    """Upstream ``infer_batch_process`` for one chunk: CFM.sample -> drop ref frames -> vocos."""

    def __init__(self, ckpt: Checkpoint, device: str = "cpu", dtype: torch.dtype = torch.float32):
        _install_stubs()
        from f5_tts.model import CFM, DiT
        from vocos import Vocos as PackageVocos

        a = ckpt.dit_args
        dit = DiT(
            dim=a.dim,
            depth=a.depth,
            heads=a.heads,
            dim_head=a.dim_head,
            ff_mult=a.ff_mult,
            mel_dim=a.mel_dim,
            text_num_embeds=a.vocab_size,
            text_dim=a.text_dim,
            conv_layers=a.conv_layers,
            text_mask_padding=a.text_mask_padding,
            pe_attn_head=a.pe_attn_head,
        )
        dit.load_state_dict(ckpt.dit_state, strict=True)
        lines = ckpt.vocab_path.read_text(encoding="utf-8").split("\n")[:-1]
        vocab = {t: i for i, t in enumerate(lines)}
        # as upstream's load_checkpoint: the whole CFM in its dtype; the vocoder stays float32
        self.cfm = CFM(transformer=dit, vocab_char_map=vocab).to(device=device, dtype=dtype).eval()
        self.dtype = dtype
        self.passes: list[tuple[int, int]] = []
        dit.register_forward_pre_hook(self._count_pass, with_kwargs=True)
        va = ckpt.vocos_args
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.yaml"
            cfg.write_text(
                _VOCOS_YAML.format(
                    sr=va.sample_rate,
                    n_fft=va.n_fft,
                    hop=va.hop_length,
                    mels=va.input_channels,
                    dim=va.dim,
                    inter=va.intermediate_dim,
                    layers=va.num_layers,
                )
            )
            self.vocos = PackageVocos.from_hparams(str(cfg))
        self.vocos.load_state_dict(ckpt.vocos_state, strict=True)
        self.vocos.to(device).eval()
        self.device = torch.device(device)

    def _count_pass(self, module, args, kwargs) -> None:
        x = kwargs.get("x", args[0] if args else None)
        rows = x.shape[0] * (2 if kwargs.get("cfg_infer") else 1)
        self.passes.append((rows, x.shape[1]))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def synthesize(
        self,
        ref_wave: torch.Tensor,
        ref_text: str,
        gen_text: str,
        mel_fn,
        nfe_step: int = 32,
        schedule: str = "uniform",
        seed: int = 0,
        cfg_strength: float = 2.0,
        sway_sampling_coef: float = -1.0,
    ) -> UpstreamOutput:
        """ref_wave: [ns] 24 kHz float32 (already clipped and RMS-raised); ref_text as the model
        sees it; mel_fn: wave -> log-mel [n, 100] (equal to upstream MelSpec)."""
        from f5_tts.model.utils import convert_char_to_pinyin

        self.passes = []
        t0 = time.perf_counter()
        cond = torch.as_tensor(mel_fn(ref_wave.numpy()))[None].to(self.device)  # [1, n_ref, 100]
        text = convert_char_to_pinyin([ref_text + gen_text])
        ref_len = ref_wave.shape[-1] // HOP
        ref_bytes, gen_bytes = len(ref_text.encode("utf-8")), len(gen_text.encode("utf-8"))
        duration = ref_len + int(ref_len / ref_bytes * gen_bytes)
        t1 = time.perf_counter()
        out, _ = self.cfm.sample(
            cond=cond,
            text=text,
            duration=duration,
            steps=nfe_step,
            cfg_strength=cfg_strength,
            sway_sampling_coef=sway_sampling_coef,
            seed=seed,
            max_duration=4096,
            use_epss=(schedule == "epss"),
        )
        gen = out.float()[:, ref_len:, :]  # [1, n_gen, 100]
        self._sync()
        t2 = time.perf_counter()
        wave = self.vocos.decode(gen.permute(0, 2, 1))[0]
        self._sync()
        t3 = time.perf_counter()
        stages = {"frontend": t1 - t0, "text_embed": 0.0, "dit": t2 - t1, "vocoder": t3 - t2}
        return UpstreamOutput(wave.cpu(), gen[0].cpu(), stages, list(self.passes))
