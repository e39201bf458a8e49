"""A stand-in for upstream F5-TTS's TensorRT-LLM Triton deployment, runnable on a CPU.

PyTriton serves a model named ``f5_tts`` with exactly the inputs, outputs and max batch size
parsed from upstream's ``model_repo_f5_tts/f5_tts/config.pbtxt``. Each call runs upstream's own
python-backend ``TritonPythonModel.execute`` (``upstream_runtime.triton_model_module``): its
input parsing, RMS rule, mel, duration rule, tokenizer and output slicing are upstream's code.
Only the two GPU engines are replaced by our tiny PyTorch model:

- ``StandInF5TTS`` takes the place of ``f5_tts_trtllm.F5TTS`` (the TensorRT-LLM DiT loop):
  same ``sample`` signature, sampling with upstream's fixed settings (uniform grid with sway
  -1, CFG 2; ``nfe`` steps, 32 upstream) through the engine's sampler. Upstream draws unseeded
  noise from one global state; the stand-in seeds every item with ``seed`` instead, so tests can
  compare audio exactly, whatever Triton batched together.
- the "vocoder" BLS model runs our Vocos (upstream: a TensorRT engine of the same Vocos).

``initialize`` is not called (it needs CUDA and engine files); ``make_model`` sets the same
attributes it sets, on the CPU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

from triton_harness import free_ports
from upstream_runtime import PbRequest, model_config, triton_model_module


class StandInF5TTS:
    """``f5_tts_trtllm.F5TTS.sample`` on our engine's sampler (CPU, float32)."""

    def __init__(self, tts, nfe: int, seed: int):
        self.tts, self.nfe, self.seed = tts, nfe, seed

    def sample(
        self,
        text_pad_sequence,
        cond_pad_sequence,
        ref_mel_len_batch,
        estimated_reference_target_mel_len,
        remove_input_padding=False,
        use_perf=False,
    ):
        from indicf5_fast.config import SamplingOptions

        b, n = cond_pad_sequence.shape[:2]
        tokens = [[int(i) for i in row if int(i) >= 0] for row in text_pad_sequence]  # -1 = padding
        durations = [min(int(d), n) for d in estimated_reference_target_mel_len]
        conds = [cond_pad_sequence[i, : int(ref_mel_len_batch[i])].float() for i in range(b)]
        opts = SamplingOptions(
            nfe_step=self.nfe, schedule="uniform", sway_sampling_coef=-1.0, cfg_strength=2.0
        )
        mel = self.tts._sample(conds, tokens, durations, [self.seed] * b, opts)  # [b, max dur, 100]
        out = torch.zeros(b, n, 100)
        out[:, : mel.shape[1]] = mel
        return out, 0.0


def make_model(tts, vocab_file: str, nfe: int = 32, seed: int = 0):
    """Upstream's ``TritonPythonModel`` with ``initialize``'s attributes set for the CPU."""

    def vocoder(mel: torch.Tensor) -> torch.Tensor:  # [b, 100, n] -> [b, (n - 1) * 256]
        with torch.inference_mode():
            return tts.backend.vocode(mel.float())

    mod = triton_model_module(vocoder)  # installs the torchaudio stand-in
    import torchaudio

    m = mod.TritonPythonModel()
    m.use_perf = False
    m.device = torch.device("cpu")
    m.target_audio_sample_rate = 24000
    m.target_rms = 0.1
    m.n_fft, m.win_length, m.hop_length, m.n_mel_channels = 1024, 1024, 256, 100
    m.max_mel_len = 4096
    m.vocab_char_map, m.vocab_size = mod.get_tokenizer(vocab_file)
    m.reference_sample_rate = 24000  # config.pbtxt parameter reference_audio_sample_rate
    m.resampler = None  # only used when that rate is not 24000
    m.model = StandInF5TTS(tts, nfe, seed)
    m.vocoder = "vocos"
    m.mel_stft = torchaudio.transforms.MelSpectrogram(
        sample_rate=24000,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        n_mels=100,
        power=1,
        center=True,
        normalized=False,
        norm=None,
    )
    m.compute_mel_fn = m.get_vocos_mel_spectrogram
    return m


def run_execute(model, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Upstream's ``execute`` on requests given as numpy dicts -> each response's ``waveform``."""
    with torch.inference_mode():
        responses = model.execute([PbRequest(r) for r in requests])
    return [r.output_tensors()[0].as_numpy() for r in responses]


@dataclass
class Record:
    """What the stand-in received: every request's arrays, and the size of every model call."""

    requests: list[dict[str, np.ndarray]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def upstream_triton(
    tts, vocab_file: str, nfe: int = 32, seed: int = 0, queue_delay_ms: float = 50
) -> Iterator:
    """PyTriton serving ``f5_tts`` with upstream's exact config -> (server namespace, Record)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from indicf5_fast.deploy.triton.pytriton_server import ensure_libpython_on_library_path

    cfg = model_config("f5_tts")
    model = make_model(tts, vocab_file, nfe, seed)
    record = Record()

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        arrays = [{k: np.asarray(v) for k, v in r.data.items()} for r in requests]
        with record.lock:
            record.requests.extend(arrays)
            record.batch_sizes.append(len(arrays))
        return [{"waveform": w} for w in run_execute(model, arrays)]

    ensure_libpython_on_library_path()
    http, grpc, metrics = free_ports(3)
    triton = Triton(
        config=TritonConfig(
            http_address="127.0.0.1",
            http_port=http,
            grpc_address="127.0.0.1",
            grpc_port=grpc,
            metrics_address="127.0.0.1",
            metrics_port=metrics,
            exit_timeout_secs=2,
        )
    )
    try:
        triton.bind(
            model_name=cfg["name"],
            infer_func=infer,
            inputs=[
                Tensor(name=t["name"], dtype=t["dtype"], shape=t["shape"], optional=t["optional"])
                for t in cfg["inputs"]
            ],
            outputs=[Tensor(name=t["name"], dtype=t["dtype"], shape=t["shape"]) for t in cfg["outputs"]],
            config=ModelConfig(
                max_batch_size=cfg["max_batch_size"],
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(queue_delay_ms * 1000)),
            ),
            strict=True,
        )
        triton.run()
        server = SimpleNamespace(
            http_url=f"127.0.0.1:{http}", grpc_url=f"127.0.0.1:{grpc}", model=model, config=cfg
        )
        yield server, record
    finally:
        triton.stop()
