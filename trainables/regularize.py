"""The regularizers of a training step, each with a strength per member of a pack (0: off).

- `input_noise`: Gaussian noise of this standard deviation added to every training input, drawn
  afresh each step (Arpit et al. 2017, Sec. 5, "input Gaussian noise").
- `crop`: random crop with this many pixels of zero padding, a shift drawn per example and step
  (Zhang et al. 2017, Table 1, "random crop"); `flip`: a horizontal flip with probability 0.5.
- `fgsm_eps`: adversarial training on inputs moved by the fast gradient sign method, x + eps *
  sign(grad_x loss) (Goodfellow et al. 2015; Arpit et al. 2017, Sec. 5, "adversarial training").
- `dropout`: each hidden unit of the MLP dropped with this probability during training, the rest
  scaled by 1 / (1 - p) (Srivastava et al. 2014; Arpit et al. 2017, Sec. 5).

Every draw comes from the member's own generator for the epoch (seeded from its order seed and
the epoch: `engine._regularizer_generators`), so a member is regularized the same way whatever
pack it trains in, after a resume, and with its data order untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from catalog import REGULARIZERS  # the names, in the catalog; their code, here


def any_on(value: float | torch.Tensor) -> bool:
    """Whether some member has this regularizer on."""
    return bool(torch.as_tensor(value).any())


def active(hyper: dict[str, float | torch.Tensor]) -> bool:
    """Whether any member has any regularizer on."""
    return any(any_on(hyper[n]) for n in REGULARIZERS)


def _each(value: float | torch.Tensor, k: int) -> list[float]:
    return value.tolist() if torch.is_tensor(value) else [float(value)] * k


def inputs(
    xb: torch.Tensor, hyper: dict[str, float | torch.Tensor], gens: Sequence[torch.Generator], shape: Sequence[int]
) -> torch.Tensor:
    """A batch xb (K', B, ...) of the K' stepping members (their generators `gens`) with each
    member's crop, flip and input noise applied; `shape` is one image's (C, H, W)."""
    k, b = xb.shape[:2]
    crops, flips, sigmas = (_each(hyper[n], k) for n in ("crop", "flip", "input_noise"))
    if not any(crops) and not any(flips) and not any(sigmas):
        return xb
    images = xb.reshape(k, b, *shape)
    out = []
    for m in range(k):  # each member's draws from its own generator
        x = images[m]
        if crops[m]:
            x = _crop(x, int(crops[m]), gens[m])
        if flips[m]:
            flip = (torch.rand(b, generator=gens[m]) < 0.5).to(x.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if sigmas[m]:
            x = x + sigmas[m] * torch.randn(x.shape, generator=gens[m]).to(x.device)
        out.append(x)
    return torch.stack(out).reshape(xb.shape)


def _crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) images each shifted by up to `pad` pixels (zero padding), as a random crop of the padded image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[
        torch.arange(b, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows,
        cols,
    ]


def fgsm(
    pack: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, members: torch.Tensor | None, eps: float | torch.Tensor
) -> torch.Tensor:
    """xb moved by eps * sign of the gradient of each member's own loss with respect to its inputs.
    The loss is summed over members (each input's gradient is its member's alone); the model's
    parameters get no gradient from it."""
    if not any_on(eps):
        return xb
    x = xb.detach().requires_grad_(True)
    kept = [b.clone() for b in pack.buffers_list()]  # this extra forward must not move batch-norm statistics
    loss = F.cross_entropy(pack(x, members).float().flatten(0, 1), yb.flatten(), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        for buffer, saved in zip(pack.buffers_list(), kept):
            buffer.copy_(saved)
    step = eps.view((-1,) + (1,) * (xb.dim() - 1)).to(xb.dtype) if torch.is_tensor(eps) else eps
    return (xb + step * grad.sign()).detach()


def dropout_masks(
    p: float | torch.Tensor,
    gens: Sequence[torch.Generator],
    k: int,
    b: int,
    widths: Sequence[int],
    device: torch.device,
) -> list[torch.Tensor] | None:
    """Per hidden layer, a (K', B, width) mask of 0 and 1 / (1 - p_k) (None when no member drops)."""
    ps = _each(p, k)
    if not any(ps):
        return None
    masks = []
    for width in widths:
        layer = [
            (torch.rand(b, width, generator=gens[m]) >= ps[m]).float() / (1 - ps[m]) if ps[m] else torch.ones(b, width)
            for m in range(k)
        ]  # a member that keeps all draws nothing
        masks.append(torch.stack(layer).to(device))
    return masks
