"""Flow-matching sampler: time grids, Euler steps, classifier-free guidance. Stateless.

Knows nothing of the model: every backend supplies a ``VelocityFn`` and the same loop drives
it. All sampler maths (timesteps, the Euler update, the CFG combination, the reference mask)
stays in float32 whatever dtype the backend computes in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# v = velocity(x [b, n, 100], cond [b, n, 100], text_emb [b, n, dt], t [b], mask [b, n] | None)
VelocityFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor
]

# Empirically Pruned Step Sampling (arXiv 2505.19931): timesteps in units of 1/32
EPSS_TABLE: dict[int, tuple[int, ...]] = {
    5: (0, 2, 4, 8, 16, 32),
    6: (0, 2, 4, 6, 8, 16, 32),
    7: (0, 2, 4, 6, 8, 16, 24, 32),
    10: (0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32),
    12: (0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32),
}
SCHEDULES = ("uniform", "epss")


def time_grid(
    nfe_step: int, schedule: str = "uniform", sway_sampling_coef: float | None = -1.0
) -> torch.Tensor:
    """[nfe_step + 1] float32 times from 0 to 1.

    uniform: linspace; epss: the pruned table where it has ``nfe_step`` (else linspace, as
    upstream). Sway: t += s·(cos(πt/2) − 1 + t); s = −1 gives 1 − cos(πt/2).
    """
    if not isinstance(nfe_step, int) or nfe_step < 1:
        raise ValueError(f"nfe_step must be a positive integer, got {nfe_step!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "epss" and nfe_step in EPSS_TABLE:
        t = torch.tensor(EPSS_TABLE[nfe_step], dtype=torch.float32) * (1 / 32)
    else:
        t = torch.linspace(0, 1, nfe_step + 1, dtype=torch.float32)
    if sway_sampling_coef is not None:
        t = t + sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


def euler_step(x: torch.Tensor, v: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    return x + (t1 - t0) * v


def cfg_combine(pred: torch.Tensor, null_pred: torch.Tensor, strength: float) -> torch.Tensor:
    return pred + (pred - null_pred) * strength


def initial_noise(durations: Sequence[int], seeds: Sequence[int], mel_dim: int = 100) -> torch.Tensor:
    """Per-item noise padded to the longest item: [b, max(durations), mel_dim] float32 (CPU).

    Item i is ``randn(durations[i], mel_dim)`` from a generator seeded with ``seeds[i]``: the
    same numbers as upstream's ``torch.manual_seed(seed); torch.randn(dur, 100)`` on CPU, but
    without touching the global RNG (safe under concurrent requests).
    """
    n = max(durations)
    out = torch.zeros(len(durations), n, mel_dim)
    for i, (dur, seed) in enumerate(zip(durations, seeds, strict=True)):
        out[i, :dur] = torch.randn(dur, mel_dim, generator=torch.Generator().manual_seed(int(seed)))
    return out


def lengths_to_mask(lengths: Sequence[int] | torch.Tensor, n: int | None = None) -> torch.Tensor:
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    n = int(lengths.max()) if n is None else n
    return torch.arange(n)[None, :] < lengths[:, None]


def sample(
    velocity: VelocityFn,
    noise: torch.Tensor,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    text_emb: torch.Tensor,
    null_text_emb: torch.Tensor | None,
    grid: torch.Tensor,
    cfg_strength: float = 2.0,
    mask: torch.Tensor | None = None,
    cfg_skip_last: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Integrate the flow from noise (t=0) to mel (t=1) with Euler steps on ``grid``.

    noise, cond: [b, n, 100] (cond is the reference mel, zero past it); cond_mask: [b, n] bool
    (reference frames); text_emb / null_text_emb: [b, n, dt] (computed once per request);
    mask: [b, n] valid frames (None for a single item). Cond and uncond passes are packed into
    one batch of 2b. ``cfg_skip_last`` drops the uncond pass for the last k steps (off = 0).
    Returns [b, n, 100] float32 with the reference frames copied from ``cond`` (upstream
    ``CFM.sample``).
    """
    x = noise.float()
    cond = cond.float()
    keep = cond_mask.unsqueeze(-1)
    step_cond = torch.where(keep, cond, torch.zeros_like(cond))
    b = x.shape[0]
    use_cfg = cfg_strength >= 1e-5 and null_text_emb is not None
    if use_cfg:
        packed_cond = torch.cat((step_cond, torch.zeros_like(step_cond)), dim=0)
        packed_text = torch.cat((text_emb, null_text_emb), dim=0)
        packed_mask = None if mask is None else torch.cat((mask, mask), dim=0)
    steps = grid.numel() - 1
    for k in range(steps):
        t0, t1 = grid[k], grid[k + 1]
        if use_cfg and k < steps - cfg_skip_last:
            v2 = velocity(torch.cat((x, x), dim=0), packed_cond, packed_text, t0.repeat(2 * b), packed_mask)
            pred, null_pred = v2.float().chunk(2, dim=0)
            v = cfg_combine(pred, null_pred, cfg_strength)
        else:
            v = velocity(x, step_cond, text_emb, t0.repeat(b), mask).float()
        x = euler_step(x, v, t0, t1)
        if on_step is not None:
            on_step(k + 1, steps)
    return torch.where(keep, cond, x)

