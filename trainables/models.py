"""Models: the fully connected network of Arpit et al. 2017 (Fig. 1: 2 x 4096 ReLU units).

`MLP` is the plain `torch.nn` network. `PackedMLP` is K independent copies of
it held as stacked parameters, so that one batched matmul per layer trains K
seeds at once (DESIGN.md, "Speed by design"). Seed k of a `PackedMLP` is
initialized exactly as `nn.Linear` would be (U(-1/sqrt(fan_in), 1/sqrt(fan_in))
for weights and biases) from its own generator, and `unpack(k)` returns it as a
plain `MLP`, so a pack can always be checked against separate trainings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear(num_classes)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int):
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        super().__init__(*layers)


def mlp_param_count(in_features: int, hidden: Sequence[int], num_classes: int) -> int:
    sizes = [in_features, *hidden, num_classes]
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


class PackedMLP(nn.Module):
    """K MLPs with stacked parameters: weight l is (K, in_l, out_l), bias l is (K, 1, out_l)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 init_seeds: Sequence[int]):
        super().__init__()
        self.in_features, self.hidden, self.num_classes = in_features, list(hidden), num_classes
        self.init_seeds = list(init_seeds)
        sizes = [in_features, *hidden, num_classes]
        per_seed = [_linear_init(sizes, seed) for seed in self.init_seeds]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i][0] for layers in per_seed]))
            for i in range(len(sizes) - 1))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i][1] for layers in per_seed])[:, None, :])
            for i in range(len(sizes) - 1))

    @property
    def num_models(self) -> int:
        return len(self.init_seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) for inputs x of shape (K, B, D) (one batch per model) or (B, D) (shared)."""
        last = len(self.weights) - 1
        if x.dim() == 2:
            # Shared input: one (B, D) x (D, K*H) GEMM instead of K small ones.
            w0 = self.weights[0]
            k, d, h = w0.shape
            x = (x @ w0.permute(1, 0, 2).reshape(d, k * h)).view(-1, k, h).transpose(0, 1)
            x = x + self.biases[0]
            layers = range(1, last + 1)
            if last > 0:
                x = torch.relu(x)
        else:
            layers = range(0, last + 1)
        for i in layers:
            x = torch.baddbmm(self.biases[i], x, self.weights[i])
            if i < last:
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def unpack(self, k: int) -> MLP:
        """Model k as a plain `MLP` (a copy, on the same device)."""
        mlp = MLP(self.in_features, self.hidden, self.num_classes).to(self.weights[0].device)
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        for lin, w, b in zip(linears, self.weights, self.biases):
            lin.weight.copy_(w[k].T)
            lin.bias.copy_(b[k, 0])
        return mlp


def _linear_init(sizes: Sequence[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """nn.Linear's default init for each layer, drawn on the CPU from one generator per model.

    Returns (weight (in, out), bias (out,)) per layer; the weight is drawn in
    nn.Linear's (out, in) layout and transposed, so `unpack` reproduces it.
    """
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=gen)
        b = torch.empty(fan_out).uniform_(-bound, bound, generator=gen)
        layers.append((w.T.contiguous(), b))
    return layers
