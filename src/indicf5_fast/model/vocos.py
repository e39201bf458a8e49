"""Vocos vocoder (charactr/vocos-mel-24khz), decode only: log-mel -> 24 kHz wave.

A pure nn.Module whose state_dict keys and shapes equal the ``vocos`` package's ``Vocos`` built
from vocos-mel-24khz's config.yaml (83 tensors at full size), so the IndicF5 checkpoint's
``vocoder.*`` tensors load with ``strict=True``.

Two ISTFT implementations, chosen by ``Vocos(..., istft_impl=...)`` or ``vocos.istft_impl = ...``:
  * ``"torch"``  — ``torch.istft(center=True)``, exactly what the vocos package runs;
  * ``"matmul"`` — inverse real DFT as one matmul against precomputed cos/sin bases, window,
    overlap-add by shifted adds, divide by the window-square envelope, trim n_fft // 2 each
    side. No complex tensors, no FFT op: exports to ONNX (dynamo) with a dynamic frame count.

Shapes: b batch, n mel frames, d model dim, f = n_fft // 2 + 1 bins, nw = (n - 1) * hop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from indicf5_fast.model.mel import MelFeatures

ISTFT_IMPLS = ("torch", "matmul")


@dataclass(frozen=True)
class VocosArgs:
    input_channels: int = 100
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    n_fft: int = 1024
    hop_length: int = 256
    sample_rate: int = 24000  # only used by the (unused at decode time) mel filterbank buffer

    @classmethod
    def tiny(cls) -> VocosArgs:
        return cls(dim=32, intermediate_dim=64, num_layers=2)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], **overrides) -> VocosArgs:
        """Architecture from tensor shapes. Any key prefix (``vocoder._orig_mod.`` …) is fine.

        The hop length and sample rate are not visible in shapes: they default to 256 / 24 kHz
        and can be given in ``overrides``.
        """
        anchor = next((k for k in sd if k.endswith("backbone.embed.weight")), None)
        if anchor is None:
            raise KeyError("not a Vocos state_dict: no '*backbone.embed.weight' key")
        pre = anchor[: -len("backbone.embed.weight")]
        dim, input_channels, _ = sd[pre + "backbone.embed.weight"].shape  # [d, 100, 7]
        block = pre + "backbone.convnext."
        layers = {int(k[len(block) :].split(".", 1)[0]) for k in sd if k.startswith(block)}
        args = cls(
            input_channels=input_channels,
            dim=dim,
            intermediate_dim=sd[block + "0.pwconv1.weight"].shape[0],
            num_layers=len(layers),
            n_fft=sd[pre + "head.out.weight"].shape[0] - 2,  # [n_fft + 2, d]: mag and phase
        )
        return replace(args, **overrides)


def vocos_state_shapes(args: VocosArgs | None = None) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of :class:`Vocos` (in module order) with its shape."""
    a = args or VocosArgs()
    f = a.n_fft // 2 + 1
    shapes: dict[str, tuple[int, ...]] = {
        "feature_extractor.mel_spec.spectrogram.window": (a.n_fft,),
        "feature_extractor.mel_spec.mel_scale.fb": (f, a.input_channels),
        "backbone.embed.weight": (a.dim, a.input_channels, 7),
        "backbone.embed.bias": (a.dim,),
        "backbone.norm.weight": (a.dim,),
        "backbone.norm.bias": (a.dim,),
    }
    for i in range(a.num_layers):
        p = f"backbone.convnext.{i}."
        shapes[p + "gamma"] = (a.dim,)
        shapes[p + "dwconv.weight"] = (a.dim, 1, 7)
        shapes[p + "dwconv.bias"] = (a.dim,)
        shapes[p + "norm.weight"] = (a.dim,)
        shapes[p + "norm.bias"] = (a.dim,)
        shapes[p + "pwconv1.weight"] = (a.intermediate_dim, a.dim)
        shapes[p + "pwconv1.bias"] = (a.intermediate_dim,)
        shapes[p + "pwconv2.weight"] = (a.dim, a.intermediate_dim)
        shapes[p + "pwconv2.bias"] = (a.dim,)
    shapes["backbone.final_layer_norm.weight"] = (a.dim,)
    shapes["backbone.final_layer_norm.bias"] = (a.dim,)
    shapes["head.out.weight"] = (a.n_fft + 2, a.dim)
    shapes["head.out.bias"] = (a.n_fft + 2,)
    shapes["head.istft.window"] = (a.n_fft,)
    return shapes


def vocos_key_names(args: VocosArgs | None = None) -> list[str]:
    """The state_dict keys of :class:`Vocos` (83 for the default size)."""
    return list(vocos_state_shapes(args))


class ConvNeXtBlock(nn.Module):
    """Depthwise conv k7 -> LayerNorm -> Linear -> exact GELU -> Linear -> layer scale, residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [b, d, n] (channels first, as the convs want it)
        h = self.norm(self.dwconv(x).transpose(1, 2))  # [b, n, d]
        h = self.pwconv2(F.gelu(self.pwconv1(h)))  # [b, n, d]
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    def __init__(self, args: VocosArgs) -> None:
        super().__init__()
        self.embed = nn.Conv1d(args.input_channels, args.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(args.dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(args.dim, args.intermediate_dim, 1.0 / args.num_layers)
            for _ in range(args.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(args.dim, eps=1e-6)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # mel: [b, 100, n] -> [b, n, d]
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)  # [b, d, n]
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """frames: [b, n, n_fft] (n_fft a multiple of hop) -> [b, (n - 1) * hop + n_fft].

    Frame t lands at samples [t*hop, t*hop + n_fft). Cutting each frame into r = n_fft // hop
    hop-sized pieces, piece j of frame t lands in output block t + j, so the overlap-add is r
    time-shifted (padded) adds of [b, n, hop] slabs: O(n * n_fft), only pad/add/reshape ops.
    """
    b, n, n_fft = frames.shape
    r = n_fft // hop
    pieces = frames.reshape(b, n, r, hop)
    out = F.pad(pieces[:, :, 0], (0, 0, 0, r - 1))  # [b, n + r - 1, hop]
    for j in range(1, r):
        out = out + F.pad(pieces[:, :, j], (0, 0, j, r - 1 - j))
    return out.reshape(b, (n + r - 1) * hop)


def _irfft_bases(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real bases so that ``re @ cos_b + im @ sin_b == torch.fft.irfft(re + i*im, n_fft)``.

    Returns cos_b, sin_b: [f, n_fft] float32. irfft(X)[t] = (1/N) * sum_k c_k (Re X_k cos(2πkt/N)
    - Im X_k sin(2πkt/N)) with c_k = 1 at DC and Nyquist, 2 elsewhere; the imaginary parts of
    DC and Nyquist are ignored (zero rows), as the C2R transform does.
    """
    f = n_fft // 2 + 1
    k = torch.arange(f, dtype=torch.int64).unsqueeze(1)
    t = torch.arange(n_fft, dtype=torch.int64).unsqueeze(0)
    # reduce k*t mod N in integers so the float64 angle stays exact for large n_fft
    angle = (2.0 * math.pi / n_fft) * torch.remainder(k * t, n_fft).to(torch.float64)  # [f, N]
    weight = torch.full((f, 1), 2.0 / n_fft, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0 / n_fft
    cos_b = weight * torch.cos(angle)
    sin_b = -weight * torch.sin(angle)
    sin_b[0] = 0.0
    sin_b[-1] = 0.0
    return cos_b.float(), sin_b.float()


class ISTFT(nn.Module):
    """Inverse STFT with centre padding (the vocos-mel-24khz head); ``window`` is the
    checkpoint's periodic Hann buffer."""

    def __init__(self, n_fft: int, hop_length: int, impl: str = "torch") -> None:
        super().__init__()
        if n_fft % hop_length:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length})")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.impl = impl
        self.register_buffer("window", torch.hann_window(n_fft))
        cos_b, sin_b = _irfft_bases(n_fft)
        # not in the state_dict: derived from n_fft alone, [2f, n_fft] with rows [cos; sin]
        self.register_buffer("basis", torch.cat([cos_b, sin_b], dim=0), persistent=False)

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in ISTFT_IMPLS:
            raise ValueError(f"istft_impl must be one of {ISTFT_IMPLS}, got {value!r}")
        self._impl = value

    def forward(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        # re, im: [b, f, n] real and imaginary parts -> wave [b, (n - 1) * hop]
        if self.impl == "torch":
            return torch.istft(
                torch.complex(re, im), self.n_fft, self.hop_length, self.n_fft, self.window, center=True
            )
        n = re.shape[-1]
        spec = torch.cat([re, im], dim=1).transpose(1, 2)  # [b, n, 2f]
        frames = torch.matmul(spec, self.basis) * self.window  # [b, n, n_fft] windowed irfft
        wave = _overlap_add(frames, self.hop_length)  # [b, (n - 1) * hop + n_fft]
        # sum of the squared windows that touched each sample: [1, (n - 1) * hop + n_fft]
        envelope = _overlap_add(self.window.square().expand(1, n, self.n_fft), self.hop_length)
        half = self.n_fft // 2
        return wave[:, half:-half] / envelope[:, half:-half]


class ISTFTHead(nn.Module):
    def __init__(self, dim: int, n_fft: int, hop_length: int, istft_impl: str = "torch") -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, istft_impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [b, n, d] -> [b, n_fft + 2, n] -> log-magnitude and phase [b, f, n] each
        log_mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(log_mag).clip(max=1e2)  # vocos's guard against huge magnitudes
        return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))  # [b, (n - 1) * hop]


class Vocos(nn.Module):
    """The vocos-mel-24khz vocoder; ``forward`` = ``decode`` (so it can be exported as is)."""

    def __init__(self, args: VocosArgs | None = None, istft_impl: str = "torch") -> None:
        super().__init__()
        self.args = args or VocosArgs()
        a = self.args
        self.feature_extractor = MelFeatures(a.sample_rate, a.n_fft, a.hop_length, a.input_channels)
        self.backbone = VocosBackbone(a)
        self.head = ISTFTHead(a.dim, a.n_fft, a.hop_length, istft_impl)

    @property
    def istft_impl(self) -> str:
        return self.head.istft.impl

    @istft_impl.setter
    def istft_impl(self, value: str) -> None:
        self.head.istft.impl = value

    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [b, 100, n] log-mel -> wave [b, (n - 1) * hop] (centre padding trimmed)."""
        return self.head(self.backbone(mel))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.decode(mel)
