"""Import the upstream ``f5-tts`` package (test-only correctness oracle) without torchaudio.

``f5_tts.model`` imports torchaudio, librosa and its Trainer at module level; none of them are
needed for ``CFM.sample`` / ``DiT`` on a mel ``cond``. We put minimal stand-ins into
``sys.modules`` before importing. Where upstream really calls torchaudio (``MelSpec``), the
stand-in is built from librosa's filterbank (a third-party reference, not our code) if librosa
is installed.
"""

from __future__ import annotations

import sys
import types

import pytest


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = sys.modules.get(name)
    if mod is None:
        mod = types.ModuleType(name)
        sys.modules[name] = mod
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def install_stubs() -> None:
    if "torchaudio" not in sys.modules:
        ta = _stub("torchaudio")
        ta.transforms = _stub("torchaudio.transforms")
    try:
        import librosa.filters  # noqa: F401
    except ImportError:
        lib = _stub("librosa")
        lib.filters = _stub("librosa.filters", mel=None)
    _stub("f5_tts.model.trainer", Trainer=None)


def f5_model():
    """Return the upstream ``f5_tts.model`` module (skips if f5-tts is not installed)."""
    pytest.importorskip("x_transformers")
    pytest.importorskip("torchdiffeq")
    install_stubs()
    try:
        import f5_tts.model as m
    except ImportError as e:  # pragma: no cover - only when the oracle is missing
        pytest.skip(f"upstream f5-tts not importable: {e}")
    return m


# --- torchaudio / vocos stand-ins (mel front end and vocoder parity) -------------------------


def _librosa_mel_spectrogram_cls():
    """A stand-in for ``torchaudio.transforms.MelSpectrogram`` built from librosa's filterbank.

    Covers the arguments upstream F5-TTS and vocos pass (htk scale, no norm, Hann window,
    ``power`` 1 or 2). Submodule/buffer names follow torchaudio (``spectrogram.window``,
    ``mel_scale.fb``) so the vocos package's state_dict has the real checkpoint's keys.
    """
    librosa = pytest.importorskip("librosa")
    import torch
    from torch import nn

    class _Spectrogram(nn.Module):
        def __init__(self, win_length: int) -> None:
            super().__init__()
            self.register_buffer("window", torch.hann_window(win_length))

    class _MelScale(nn.Module):
        def __init__(self, fb: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("fb", fb)

    class MelSpectrogram(nn.Module):
        def __init__(
            self,
            sample_rate=16000,
            n_fft=400,
            win_length=None,
            hop_length=None,
            f_min=0.0,
            f_max=None,
            pad=0,
            n_mels=128,
            window_fn=torch.hann_window,
            power=2.0,
            normalized=False,
            wkwargs=None,
            center=True,
            pad_mode="reflect",
            onesided=None,
            norm=None,
            mel_scale="htk",
        ) -> None:
            super().__init__()
            assert norm is None and mel_scale == "htk" and pad == 0 and not normalized
            assert window_fn is torch.hann_window and wkwargs is None
            self.n_fft, self.power, self.center, self.pad_mode = n_fft, power, center, pad_mode
            self.win_length = win_length or n_fft
            self.hop_length = hop_length or self.win_length // 2
            fb = librosa.filters.mel(
                sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=True, norm=None
            )  # [n_mels, n_fft // 2 + 1]
            self.spectrogram = _Spectrogram(self.win_length)
            self.mel_scale = _MelScale(torch.from_numpy(fb).float().T.contiguous())

        def forward(self, wave):
            spec = torch.stft(
                wave,
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.spectrogram.window,
                center=self.center,
                pad_mode=self.pad_mode,
                return_complex=True,
            )
            spec = spec.abs().pow(self.power)  # [b, f, n]
            return torch.matmul(spec.transpose(-1, -2), self.mel_scale.fb).transpose(-1, -2)

    return MelSpectrogram


def install_torchaudio_standins() -> None:
    """Stub ``torchaudio`` (+ ``encodec``) far enough for upstream ``MelSpec`` and ``vocos``.

    Skips the calling test if librosa is missing. Never touches a real torchaudio.
    """
    install_stubs()
    ta = sys.modules["torchaudio"]
    if getattr(ta, "__file__", None) is not None:  # a real torchaudio: leave it alone
        return
    ta.transforms.MelSpectrogram = _librosa_mel_spectrogram_cls()
    # vocos.heads imports these for the IMDCT heads only (unused by vocos-mel-24khz)
    ta.functional = _stub("torchaudio.functional")
    ta.functional.functional = _stub("torchaudio.functional.functional", _hz_to_mel=None, _mel_to_hz=None)
    _stub("encodec", EncodecModel=None)


def vocos_package():
    """Return the ``vocos`` package (test-only oracle for the vocoder), importable without
    torchaudio/encodec; skips if vocos or librosa is not installed."""
    install_torchaudio_standins()
    return pytest.importorskip("vocos")


def upstream_chunk_text():
    """Upstream's own ``f5_tts.infer.utils_infer.chunk_text``, the function object itself.

    ``utils_infer`` imports matplotlib, torchaudio, pydub, transformers and vocos at module level,
    none of which chunking needs, so the function's source is taken from the installed file and
    compiled alone (its only dependency is ``re``). Skips if f5-tts is not installed.
    """
    import ast
    import importlib.util
    import re

    spec = importlib.util.find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("upstream f5-tts is not installed")
    from pathlib import Path

    path = Path(list(spec.submodule_search_locations)[0]) / "infer" / "utils_infer.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "chunk_text")
    namespace: dict = {"re": re}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["chunk_text"]
