"""Random-weight checkpoints in the exact IndicF5 HF layout (tests, demo, benchmarks).

``base`` has IndicF5's full shapes (447 tensors: 364 DiT under
``ema_model._orig_mod.transformer.`` + 83 Vocos under ``vocoder._orig_mod.``); ``tiny`` has the
same layout with small dims. Weights are non-degenerate (see ``model.init``). Speed does not
depend on weight values, so ``base`` is what the benchmarks run.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import torch

from indicf5_fast.model.dit import DiT, DiTArgs
from indicf5_fast.model.init import init_random_, init_random_vocos_
from indicf5_fast.model.vocos import Vocos, VocosArgs

# Unicode blocks of the 9 Indic scripts IndicF5 covers (besides Latin):
INDIC_BLOCKS = {
    "Devanagari": (0x0900, 0x097F),
    "Bengali": (0x0980, 0x09FF),
    "Gurmukhi": (0x0A00, 0x0A7F),
    "Gujarati": (0x0A80, 0x0AFF),
    "Odia": (0x0B00, 0x0B7F),
    "Tamil": (0x0B80, 0x0BFF),
    "Telugu": (0x0C00, 0x0C7F),
    "Kannada": (0x0C80, 0x0CFF),
    "Malayalam": (0x0D00, 0x0D7F),
}
BASE_VOCAB_SIZE = 2545  # IndicF5's reported vocab size; the base vocab is padded up to it
DEMO_TEXT = "नमस्ते, यह एक परीक्षण वाक्य है।"


def build_vocab(size: int | None = None) -> list[str]:
    """Space first, then printable ASCII, common punctuation and every assigned code point of
    the Indic blocks; optionally padded with further assigned characters up to ``size``."""
    tokens = [" "]
    tokens += [chr(c) for c in range(0x21, 0x7F)]
    tokens += list("–—…‘’“”«»·•°₹")
    for lo, hi in INDIC_BLOCKS.values():
        tokens += [chr(c) for c in range(lo, hi + 1) if unicodedata.category(chr(c)) != "Cn"]
    seen: set[str] = set()
    tokens = [t for t in tokens if not (t in seen or seen.add(t))]
    c = 0x00C0
    while size is not None and len(tokens) < size:
        ch = chr(c)
        if unicodedata.category(ch)[0] in "LMNP" and ch not in seen:
            tokens.append(ch)
            seen.add(ch)
        c += 1
    return tokens[:size] if size else tokens


def demo_voice(seconds: float = 2.4, sr: int = 24_000, seed: int = 0) -> np.ndarray:
    """A speech-like reference: a glottal pulse train through moving formants, in syllables
    separated by short pauses. Real voices are for real checkpoints; this one only has to
    exercise the front end (RMS, trimming, mel) like speech does."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t)
    pulses = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / sr)) * 0.5 + 0.05 * rng.standard_normal(n)
    spec = np.fft.rfft(pulses)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    env = sum(np.exp(-((freqs - f) ** 2) / (2 * bw**2)) for f, bw in ((700, 120), (1200, 150), (2600, 250)))
    voiced = np.fft.irfft(spec * env, n)
    syllable = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.6  # ~6 syllables/s with gaps
    edge = np.minimum(1.0, np.minimum(t, seconds - t) / 0.15)  # fade in/out
    wave = voiced * syllable * edge
    return (0.3 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def write_random_checkpoint(
    out_dir: str | Path, arch: str = "tiny", seed: int = 0, flavour: str = "v0"
) -> Path:
    import soundfile as sf
    from safetensors.torch import save_file

    if arch not in ("tiny", "base"):
        raise ValueError(f"arch must be 'tiny' or 'base', got {arch!r}")
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "prompts").mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(BASE_VOCAB_SIZE if arch == "base" else None)
    if arch == "base":
        dit_args, voc_args = DiTArgs.base(len(vocab), flavour), VocosArgs()
    else:
        dit_args, voc_args = DiTArgs.tiny(len(vocab), flavour), VocosArgs.tiny()
    g = torch.Generator().manual_seed(seed)
    dit = init_random_(DiT(dit_args), g)
    vocos = init_random_vocos_(Vocos(voc_args), g)
    save_file(indicf5_layout(dit, vocos), str(out / "model.safetensors"))
    (out / "checkpoints" / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    config = {
        "model_type": "inf5",
        "remove_sil": True,
        "speed": 1.0,
        "vocab_path": "checkpoints/vocab.txt",
        "arch": {
            "flavour": flavour,
            "preset": arch,
            "random_seed": seed,
            "note": "random weights written by indicf5-fast init-random (not a trained model)",
        },
    }
    (out / "config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    sf.write(str(out / "prompts" / "demo.wav"), demo_voice(seed=seed), 24_000, subtype="PCM_16")
    (out / "prompts" / "demo.txt").write_text(DEMO_TEXT + "\n", encoding="utf-8")
    return out


def indicf5_layout(dit: DiT, vocos: Vocos) -> dict[str, torch.Tensor]:
    """State dicts under the key prefixes of IndicF5's model.safetensors (both modules were
    wrapped in torch.compile when IndicF5 saved them, hence ``_orig_mod.``)."""
    tensors = {f"ema_model._orig_mod.transformer.{k}": v.contiguous() for k, v in dit.state_dict().items()}
    tensors |= {f"vocoder._orig_mod.{k}": v.contiguous() for k, v in vocos.state_dict().items()}
    return tensors
