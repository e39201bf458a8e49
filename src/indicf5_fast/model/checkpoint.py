"""Checkpoint loading: IndicF5 HF layout, upstream F5 checkpoints, Vocos dirs, hub ids.

Every layout is read into plain state dicts, the architecture is recovered from tensor shapes,
and every mismatch becomes a CheckpointError that names the offending keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from indicf5_fast.errors import CheckpointError
from indicf5_fast.model.dit import DiT, DiTArgs, flavour_flags
from indicf5_fast.model.hub import download_model, download_vocoder, looks_like_hub_id
from indicf5_fast.model.vocos import Vocos, VocosArgs

DIT_PREFIXES = ("ema_model.transformer.", "transformer.")
VOCOS_PREFIX = "vocoder."


@dataclass
class Checkpoint:
    dit_args: DiTArgs
    dit_state: dict[str, torch.Tensor]
    vocos_args: VocosArgs
    vocos_state: dict[str, torch.Tensor]
    vocab_path: Path
    config: dict = field(default_factory=dict)
    source: str = ""
    fingerprint: str = ""  # hash of the weight file(s): ONNX manifests are checked against it

    def build(self) -> tuple[DiT, Vocos]:
        dit = DiT(self.dit_args)
        _load_strict(dit, self.dit_state, "DiT")
        vocos = Vocos(self.vocos_args)
        _load_strict(vocos, self.vocos_state, "vocoder")
        return dit.eval(), vocos.eval()


def resolve_model(model: str | Path, revision: str | None = None) -> Path:
    """A local path, or a hub id (``owner/name``) downloaded with huggingface_hub at ``revision``
    (branch, tag or commit; None = the default branch). Only the files the loader reads are fetched."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    if looks_like_hub_id(str(model)):
        return download_model(str(model), revision)
    raise CheckpointError(f"model not found: {model} (not a file, a directory or a hub id)")


def resolve_vocoder(vocoder: str | Path) -> Path:
    """A local Vocos directory, or a Vocos hub repo (config.yaml + pytorch_model.bin)."""
    path = Path(vocoder).expanduser()
    if not path.exists() and looks_like_hub_id(str(vocoder)):
        return download_vocoder(str(vocoder))
    return path


def load_checkpoint(
    model: str | Path,
    flavour: str | None = None,
    vocab: str | Path | None = None,
    vocoder: str | Path | None = None,
    *,
    revision: str | None = None,
) -> Checkpoint:
    """Read a checkpoint (dir, weight file or hub id at ``revision``) into state dicts + arch."""
    path = resolve_model(model, revision)
    config: dict = {}
    if path.is_dir():
        config = _read_config(path / "config.json")
        weights = _find_weights(path)
        vocab_path = Path(vocab) if vocab else path / config.get("vocab_path", "checkpoints/vocab.txt")
    else:
        weights, vocab_path = path, Path(vocab) if vocab else None
        if vocab_path is None:
            raise CheckpointError(f"{path} is a single weight file: pass the vocab file (--vocab)")
    raw = _read_tensors(weights)
    dit_state, vocos_state = split_state(raw)
    if not dit_state:
        raise CheckpointError(f"{weights}: no DiT weights (expected keys under 'ema_model.transformer.')")
    if not vocos_state:
        if vocoder is None:
            raise CheckpointError(
                f"{weights} has no vocoder weights: pass a Vocos directory or hub id (--vocoder)"
            )
        vocos_state = load_vocos_dir(resolve_vocoder(vocoder))
    arch = config.get("arch", {})
    flavour = flavour or arch.get("flavour", "v0")
    dit_args = dit_args_from_state(dit_state, flavour)
    if not vocab_path.is_file():
        raise CheckpointError(f"vocab file not found: {vocab_path}")
    n_tokens = sum(1 for _ in vocab_path.open(encoding="utf-8"))
    if n_tokens != dit_args.vocab_size:
        raise CheckpointError(
            f"vocab {vocab_path} has {n_tokens} tokens but the text embedding has {dit_args.vocab_size} + 1 rows"
        )
    return Checkpoint(
        dit_args=dit_args,
        dit_state=dit_state,
        vocos_args=VocosArgs.from_state_dict(vocos_state),
        vocos_state=vocos_state,
        vocab_path=vocab_path,
        config=config,
        source=str(path),
        fingerprint=_fingerprint(weights),
    )


def split_state(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Full checkpoint -> (DiT state, Vocos state). ``_orig_mod.`` (torch.compile wrappers) is
    removed wherever it appears; bookkeeping keys (``initted``, ``step``) are ignored."""
    if "ema_model_state_dict" in raw:  # training .pt
        raw = raw["ema_model_state_dict"]
    dit, voc = {}, {}
    for key, value in raw.items():
        if not torch.is_tensor(value):
            continue
        k = key.replace("_orig_mod.", "")
        for prefix in DIT_PREFIXES:
            if k.startswith(prefix):
                dit[k[len(prefix) :]] = value
                break
        else:
            if k.startswith(VOCOS_PREFIX):
                voc[k[len(VOCOS_PREFIX) :]] = value
    return dit, voc


def dit_args_from_state(sd: dict[str, torch.Tensor], flavour: str = "v0") -> DiTArgs:
    try:
        dim = sd["proj_out.weight"].shape[1]
        mel_dim = sd["proj_out.weight"].shape[0]
        dim_head = sd["rotary_embed.inv_freq"].shape[0] * 2
        heads = sd["transformer_blocks.0.attn.to_q.weight"].shape[0] // dim_head
        vocab_plus_one, text_dim = sd["text_embed.text_embed.weight"].shape
        ff_mult = sd["transformer_blocks.0.ff.ff.0.0.weight"].shape[0] // dim
    except KeyError as e:
        raise CheckpointError(f"DiT weights are missing key {e.args[0]!r}") from e
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    blocks = [k for k in sd if k.startswith("text_embed.text_blocks.")]
    conv_layers = 1 + max((int(k.split(".")[2]) for k in blocks), default=-1)
    try:
        flags = flavour_flags(flavour)
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    return DiTArgs(
        dim=dim,
        depth=depth,
        heads=heads,
        dim_head=dim_head,
        ff_mult=ff_mult,
        mel_dim=mel_dim,
        vocab_size=vocab_plus_one - 1,
        text_dim=text_dim,
        conv_layers=conv_layers,
        **flags,
    )


def load_vocos_dir(path: Path) -> dict[str, torch.Tensor]:
    weights = path / "pytorch_model.bin"
    if not weights.is_file():
        raise CheckpointError(f"Vocos directory {path} has no pytorch_model.bin")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{weights} is not a readable PyTorch file: {e}") from e
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if bad_shape:
        problems.append(
            "wrong shapes "
            + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in bad_shape[:3])
        )
    if problems:
        raise CheckpointError(f"{what} weights do not fit the architecture: " + "; ".join(problems))
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def _few(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


def _find_weights(path: Path) -> Path:
    for name in ("model.safetensors", "model.pt", "model_last.pt"):
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pt"))
    if not found:
        raise CheckpointError(f"no weights in {path} (expected model.safetensors)")
    return found[0]


def _read_tensors(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors/pickle raise many types for a corrupt file
        raise CheckpointError(f"{path} is corrupt or not a checkpoint: {type(e).__name__}: {e}") from e


def _fingerprint(path: Path) -> str:
    """Cheap identity of a weight file: size + hash of its first and last MiB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]
