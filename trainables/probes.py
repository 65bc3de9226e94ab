"""Probes: functions of a trained model and data, called by the engines at chosen epochs
(Arpit et al. 2017, Sec. 4 and Fig. 9; weight-noise sensitivity from follow-up work). None trains; each leaves the model as it found it.

- `critical_sample_ratio`: Arpit et al. 2017 (Fig. 9). Langevin Adversarial Sample Search
  (LASS) on many samples at once: from x0, repeat x <- clip_r(x + alpha * sign(grad_x L(f(x),
  y0)) + beta * N(0, 1)), where y0 is the model's prediction at x0 and clip_r keeps
  ||x - x0||_inf <= r, until the prediction differs from y0 or `iters` steps are spent. A
  sample whose prediction changes inside the box is critical; CSR = critical / searched.
  alpha, beta and r are in pixel units ([0, 1] intensities) and converted to the tensors'
  standardized units with the data's `pixel_scale` (per channel).
- `weight_noise_accuracy`: every parameter multiplied by exp(sigma * N(0, 1)) (log-normal
  noise), accuracy averaged over `draws` noise draws per sigma.
- `first_layer_filters`: the first convolution's weights, (filters, C, kH, kW).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalog import LASS_ALPHA, LASS_BETA, LASS_ITERS, LASS_R

from .engine import infer
from .models import eval_mode


@dataclass
class CriticalSamples:
    critical: np.ndarray  # (N,) bool: prediction changed inside the r-box
    steps: np.ndarray  # (N,) int: LASS steps until it changed (iters + 1 if it never did)

    @property
    def ratio(self) -> float:
        return float(self.critical.mean()) if len(self.critical) else float("nan")


def critical_sample_ratio(
    model: nn.Module,
    x: torch.Tensor,
    *,
    pixel_scale: Sequence[float] = (1.0,),
    alpha: float = LASS_ALPHA,
    beta: float = LASS_BETA,
    r: float = LASS_R,
    iters: int = LASS_ITERS,
    chunk: int = 1024,
    generator: torch.Generator | None = None,
) -> CriticalSamples:
    """LASS on every sample of x (N, ...) at once, `chunk` samples a step. The noise is drawn
    on the CPU from `generator` (so a seed gives the same search on every device)."""
    scale = torch.as_tensor(pixel_scale, dtype=x.dtype, device=x.device)
    shape = (1, -1) + (1,) * (x.dim() - 2) if x.dim() > 2 else (1, -1)
    scale = scale.view(shape) if scale.numel() > 1 else scale.reshape(())
    crit, steps = [], []
    with eval_mode(model):
        for lo in range(0, x.shape[0], chunk):
            c, s = _lass(model, x[lo : lo + chunk], scale, alpha, beta, r, iters, generator)
            crit.append(c)
            steps.append(s)
    return CriticalSamples(np.concatenate(crit), np.concatenate(steps))


def _lass(model, x0, scale, alpha, beta, r, iters, generator):
    with torch.no_grad():
        y0 = model(x0).argmax(-1)
    box = r * scale
    x = x0.clone()
    critical = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    steps = torch.full((len(x0),), iters + 1, dtype=torch.int64, device=x0.device)
    for t in range(1, iters + 1):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), y0, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        active = (~critical).view(-1, *([1] * (x.dim() - 1)))
        with torch.no_grad():
            step = alpha * scale * grad.sign() + beta * scale * noise
            x = torch.where(active, torch.minimum(torch.maximum(x + step, x0 - box), x0 + box), x).detach()
            changed = (model(x).argmax(-1) != y0) & ~critical
        steps[changed] = t
        critical |= changed
        if bool(critical.all()):
            break
    return critical.cpu().numpy(), steps.cpu().numpy()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of x classified as y, the model fixed (eval mode)."""
    return float((infer(model, x)[0].argmax(-1) == y).float().mean()) if len(y) else float("nan")


@torch.no_grad()
def weight_noise_accuracy(
    model: nn.Module,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    sigmas: Sequence[float],
    draws: int,
    generator: torch.Generator | None = None,
) -> list[dict]:
    """Rows {split, sigma, draw, acc}: accuracy with every parameter multiplied by
    exp(sigma * N(0, 1)) (a fresh draw per `draw`, the same perturbed model for every split).
    sigma = 0 is the model itself (one draw). The model's own weights are restored."""
    params = [p for p in model.parameters()]
    saved = [p.detach().clone() for p in params]
    rows = []
    try:
        for sigma in sigmas:
            for draw in range(1 if sigma == 0 else draws):
                for p, w in zip(params, saved):
                    noise = torch.randn(w.shape, generator=generator).to(w.device)
                    p.copy_(w * torch.exp(sigma * noise))
                for split, (x, y) in splits.items():
                    rows.append({"split": split, "sigma": float(sigma), "draw": draw, "acc": accuracy(model, x, y)})
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
    return rows


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


@torch.no_grad()
def first_layer_filters(model: nn.Module) -> np.ndarray:
    """The first convolution's weights (filters, C, kH, kW) float32; ValueError if the model has none."""
    conv = first_conv(model)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution: first-layer filters need a CNN")
    return conv.weight.detach().float().cpu().numpy().copy()  # a copy: on the CPU .numpy() shares memory
