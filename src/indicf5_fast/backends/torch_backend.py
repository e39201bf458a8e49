"""PyTorch backend: the DiT and Vocos modules in the chosen dtype on the chosen device."""

from __future__ import annotations

import torch

from indicf5_fast.backends.base import Backend
from indicf5_fast.model.dit import DiT
from indicf5_fast.model.vocos import Vocos


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, dit: DiT, vocos: Vocos, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.dit = dit.to(device=device, dtype=dtype).eval()
        # The vocoder's ISTFT needs float32 (no complex bf16); its backbone is cheap either way.
        self.vocos = vocos.to(device=device).eval()
        self._step = self.dit  # replaced by a compiled callable when compile is on

    @torch.inference_mode()
    def text_embed(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return self.dit.text_embed(tokens.to(self.device), None, drop.to(self.device))

    @torch.inference_mode()
    def velocity(self, x, cond, text_emb, t, mask):
        dev, dt = self.device, self.dtype
        v = self._step(
            x.to(dev, dt),
            cond.to(dev, dt),
            text_emb.to(dev, dt),
            t.to(dev, torch.float32),
            None if mask is None else mask.to(dev),
        )
        return v.float()

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocos.decode(mel.to(self.device, torch.float32)).float()
