"""Non-degenerate random initialisation for random-weight checkpoints.

Upstream's ``DiT.initialize_weights`` zeroes the adaLN linears and ``proj_out``, so a freshly
built model outputs exactly 0 and every parity test passes vacuously. Here every parameter gets
a non-zero draw; buffers (rotary frequencies, STFT windows, mel filterbanks) keep their values.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_random_(module: nn.Module, generator: torch.Generator, std: float = 0.02) -> nn.Module:
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(_owner(module, name), nn.Embedding):
            p.copy_(torch.randn(p.shape, generator=generator))
        elif isinstance(_owner(module, name), nn.LayerNorm) and leaf == "weight":
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
        elif leaf in ("gamma", "beta"):  # GRN / layer scale: zero would switch the path off
            p.copy_(0.1 + 0.05 * torch.randn(p.shape, generator=generator))
        else:
            p.copy_(std * torch.randn(p.shape, generator=generator))
    return module


def _owner(root: nn.Module, param_name: str) -> nn.Module:
    path = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return root.get_submodule(path) if path else root
