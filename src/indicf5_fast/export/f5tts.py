"""Export a checkpoint in upstream F5-TTS's own file formats (for its TensorRT-LLM Triton runtime).

Upstream ``f5-tts`` (1.1.22) ships ``runtime/triton_trtllm``: ``scripts/convert_checkpoint.py``
reads a training-style checkpoint, ``trtllm-build`` builds the DiT engine, and the ``f5_tts``
Triton model loads the text embedding from the same checkpoint, the vocabulary from
``vocab.txt`` and (for the vocoder engine) a Vocos directory. IndicF5 ships one safetensors file
with the DiT and the vocoder inside, under ``torch.compile`` key prefixes, so none of those tools
can read it directly. This module writes, into one directory:

- ``model_<step>.pt``: ``{"ema_model_state_dict": {"initted", "step", "ema_model.transformer.<k>": …}}``,
  the layout of upstream's training checkpoints (``load_checkpoint`` / ``convert_checkpoint.py``
  / the runtime's ``get_text_embed_dict`` all read it);
- ``vocab.txt``: one token per line, every line newline-terminated (upstream drops the last
  character of every line, so an unterminated last token would lose its character);
- ``vocos-mel-24khz/config.yaml`` + ``pytorch_model.bin``: the vocoder inside the checkpoint, in
  the layout of ``charactr/vocos-mel-24khz`` (``load_vocoder(is_local=True, local_path=…)``);
- ``model_cfg.yaml``: an upstream model config (``F5TTS_Base.yaml`` shape) with the checkpoint's
  dims and flavour flags (IndicF5 = v0: ``text_mask_padding: False``, ``pe_attn_head: 1``);
- ``export.json``: what was exported from where, the matching ``convert_checkpoint.py --model_name``
  and every file's size and sha256. Written last: a crashed export is never taken for a good one.

Public: :func:`export_f5tts`, :func:`model_config`, :func:`upstream_model_name`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from indicf5_fast.errors import CheckpointError, InputError
from indicf5_fast.model.dit import DiTArgs
from indicf5_fast.model.vocos import VocosArgs

FORMAT = "indicf5-fast-f5tts"
FORMAT_VERSION = 1
MANIFEST = "export.json"
VOCOS_DIR = "vocos-mel-24khz"
MODEL_CFG = "model_cfg.yaml"
VOCAB = "vocab.txt"
DIT_PREFIX = "ema_model.transformer."

# convert_checkpoint.py --model_name presets: (dim, depth, heads, dim_head, ff_mult, text_dim, conv_layers)
_UPSTREAM_PRESETS = {
    ("v0", (1024, 22, 16, 64, 2, 512, 4)): "F5TTS_Base",
    ("v1", (1024, 22, 16, 64, 2, 512, 4)): "F5TTS_v1_Base",
    ("v0", (768, 18, 12, 64, 2, 512, 4)): "F5TTS_Small",
    ("v1", (768, 18, 12, 64, 2, 512, 4)): "F5TTS_v1_Small",
}


def upstream_model_name(args: DiTArgs) -> str | None:
    """The ``convert_checkpoint.py --model_name`` whose hard-coded dims and flags are exactly
    these (IndicF5 -> ``F5TTS_Base``), or None (then its explicit dim flags must be used)."""
    dims = (args.dim, args.depth, args.heads, args.dim_head, args.ff_mult, args.text_dim, args.conv_layers)
    return _UPSTREAM_PRESETS.get((args.flavour, dims))


def model_config(args: DiTArgs, name: str = "IndicF5") -> dict:
    """Upstream's model config (the ``model:`` block of ``configs/F5TTS_Base.yaml``) for these
    DiT args: ``DiT(**model.arch, text_num_embeds=V, mel_dim=100)`` builds the same network."""
    return {
        "model": {
            "name": name,
            "tokenizer": "custom",
            "tokenizer_path": VOCAB,
            "backbone": "DiT",
            "arch": {
                "dim": args.dim,
                "depth": args.depth,
                "heads": args.heads,
                "dim_head": args.dim_head,
                "ff_mult": args.ff_mult,
                "text_dim": args.text_dim,
                "text_mask_padding": args.text_mask_padding,
                "qk_norm": None,  # neither IndicF5 nor F5TTS_v1_Base normalises q/k
                "conv_layers": args.conv_layers,
                "pe_attn_head": args.pe_attn_head,
                "attn_backend": "torch",
                "attn_mask_enabled": False,
                "checkpoint_activations": False,
            },
            "mel_spec": {
                "target_sample_rate": 24000,
                "n_mel_channels": args.mel_dim,
                "hop_length": 256,
                "win_length": 1024,
                "n_fft": 1024,
                "mel_spec_type": "vocos",
            },
            "vocoder": {"is_local": True, "local_path": VOCOS_DIR},
        }
    }


def vocos_config(args: VocosArgs) -> dict:
    """``config.yaml`` of a Vocos directory (the layout of ``charactr/vocos-mel-24khz``)."""
    return {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {
                "sample_rate": args.sample_rate,
                "n_fft": args.n_fft,
                "hop_length": args.hop_length,
                "n_mels": args.input_channels,
                "padding": "center",
            },
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {
                "input_channels": args.input_channels,
                "dim": args.dim,
                "intermediate_dim": args.intermediate_dim,
                "num_layers": args.num_layers,
            },
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {
                "dim": args.dim,
                "n_fft": args.n_fft,
                "hop_length": args.hop_length,
                "padding": "center",
            },
        },
    }


def export_f5tts(
    model: str | Path,
    out: str | Path,
    *,
    flavour: str | None = None,
    vocab: str | Path | None = None,
    vocoder: str | Path | None = None,
    step: int = 0,
    force: bool = False,
) -> Path:
    """Write the upstream-format files of ``model`` into ``out``; returns ``out``.

    ``out`` must be new, empty, or an earlier export of this kind (replaced), unless ``force``.
    """
    import torch
    import yaml

    from indicf5_fast.model.checkpoint import load_checkpoint

    if not isinstance(step, int) or step < 0:
        raise InputError(f"step must be a non-negative integer, got {step!r}", "step")
    out = Path(out).expanduser()
    _check_out_dir(out, force)
    ckpt = load_checkpoint(model, flavour=flavour, vocab=vocab, vocoder=vocoder)
    tokens = _read_tokens(ckpt.vocab_path)
    if len(tokens) != ckpt.dit_args.vocab_size:  # load_checkpoint counts lines; be exact here
        raise CheckpointError(
            f"vocab {ckpt.vocab_path} has {len(tokens)} tokens but the text embedding has "
            f"{ckpt.dit_args.vocab_size} + 1 rows"
        )
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)

    weights = f"model_{step}.pt"
    ema = {"initted": torch.tensor(True), "step": torch.tensor(step)}
    ema.update({DIT_PREFIX + k: v.detach().contiguous() for k, v in ckpt.dit_state.items()})
    torch.save({"ema_model_state_dict": ema}, out / weights)
    (out / VOCAB).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    vdir = out / VOCOS_DIR
    vdir.mkdir(exist_ok=True)
    torch.save({k: v.detach().contiguous() for k, v in ckpt.vocos_state.items()}, vdir / "pytorch_model.bin")
    (vdir / "config.yaml").write_text(yaml.safe_dump(vocos_config(ckpt.vocos_args), sort_keys=False))
    name = upstream_model_name(ckpt.dit_args)
    (out / MODEL_CFG).write_text(
        yaml.safe_dump(model_config(ckpt.dit_args, name or "IndicF5_custom"), sort_keys=False)
    )

    files = [weights, VOCAB, MODEL_CFG, f"{VOCOS_DIR}/config.yaml", f"{VOCOS_DIR}/pytorch_model.bin"]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": ckpt.source,
        "source_fingerprint": ckpt.fingerprint,
        "flavour": ckpt.dit_args.flavour,
        "dit_args": ckpt.dit_args.to_dict(),
        "vocab_size": len(tokens),
        "checkpoint": weights,
        "upstream_model_name": name,  # convert_checkpoint.py --model_name (None: pass the dims)
        "upstream": "f5-tts 1.1.22, src/f5_tts/runtime/triton_trtllm",
        "files": {f: {"bytes": (out / f).stat().st_size, "sha256": _sha256(out / f)} for f in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def convert_command(manifest: dict, out: str | Path, dtype: str = "float16") -> str:
    """The ``convert_checkpoint.py`` call for this export (run inside upstream's runtime dir)."""
    ckpt = Path(out) / manifest["checkpoint"]
    name = manifest.get("upstream_model_name")
    if name:
        flags = f"--model_name {name}"
    else:  # no preset fits: spell the architecture out (F5TTS_Custom)
        a = manifest["dit_args"]
        flags = (
            f"--hidden_size {a['dim']} --depth {a['depth']} --num_heads {a['heads']} "
            f"--dim_head {a['dim_head']} --ff_mult {a['ff_mult']} --text_dim {a['text_dim']} "
            f"--conv_layers {a['conv_layers']} --text_mask_padding {a['text_mask_padding']} "
            + (f"--pe_attn_head {a['pe_attn_head']}" if a["pe_attn_head"] is not None else "")
        ).strip()
    return f"python3 scripts/convert_checkpoint.py --pytorch_ckpt {ckpt} --output_dir trtllm_ckpt {flags} --dtype {dtype}"


# ---------------------------------------------------------------------------------- helpers
def _read_tokens(path: Path) -> list[str]:
    from indicf5_fast.frontend.text import Tokenizer

    tokens = Tokenizer.from_file(path).tokens
    dupes = sorted(t for t, n in Counter(tokens).items() if n > 1)
    if dupes:  # upstream builds {token: index}: a duplicate shrinks its vocab and the embedding misfits
        raise CheckpointError(f"vocab {path} lists tokens more than once: {dupes[:5]!r}")
    if any("\n" in t or "\r" in t for t in tokens):
        raise CheckpointError(f"vocab {path} has a token with a line break")
    return tokens


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory", "out")
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    try:
        ok = json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise InputError(
            f"--out {out} is not empty and holds no earlier f5tts export: choose a new directory "
            "(or --force to write into it)",
            "out",
        )


def _remove_previous(out: Path) -> None:
    """Drop an earlier export's files first (its manifest goes first of all), so a stale
    ``model_<n>.pt`` cannot sit next to the new one (upstream's run.sh takes the newest)."""
    manifest = out / MANIFEST
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    manifest.unlink(missing_ok=True)
    for name in old.get("files", {}):
        path = (out / name).resolve()
        if path.is_relative_to(out.resolve()) and path.is_file():
            path.unlink()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
