"""Non-degenerate random initialisation for random-weight checkpoints.

Upstream's ``DiT.initialize_weights`` zeroes the adaLN linears and ``proj_out``, so a freshly
built model outputs exactly 0 and every parity test passes vacuously. Here every parameter gets
a non-zero draw; buffers (rotary frequencies, STFT windows, mel filterbanks) keep their values.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_random_(
    module: nn.Module, generator: torch.Generator, std: float = 0.02, scale_std: float = 0.05
) -> nn.Module:
    """Every parameter, in ``named_parameters`` order, from ``generator`` (drawn on the CPU in
    float32, then copied, so the weights do not depend on the module's device): embeddings
    N(0, 1), LayerNorm weights N(1, 0.1), GRN gamma/beta and layer scales N(0.1, scale_std),
    everything else N(0, std)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(_owner(module, name), nn.Embedding):
            p.copy_(_draw(p, generator))
        elif isinstance(_owner(module, name), nn.LayerNorm) and leaf == "weight":
            p.copy_(1.0 + 0.1 * _draw(p, generator))
        elif leaf in ("gamma", "beta"):  # GRN / layer scale: zero would switch the path off
            p.copy_(0.1 + scale_std * _draw(p, generator))
        else:
            p.copy_(std * _draw(p, generator))
    return module


def init_random_vocos_(vocos: nn.Module, generator: torch.Generator) -> nn.Module:
    """Vocos: as ``init_random_`` with layer scales N(0.1, 0.02) (kept well away from zero)."""
    return init_random_(vocos, generator, scale_std=0.02)


def _draw(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(p.shape, generator=generator, dtype=torch.float32)


def _owner(root: nn.Module, param_name: str) -> nn.Module:
    path = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return root.get_submodule(path) if path else root
