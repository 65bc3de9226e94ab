"""Models: the MLPs of Arpit et al. 2017 (Fig. 1) and the architectures of Zhang et al. 2017.

`MLP` is the plain `torch.nn` network. `PackedMLP` is K independent copies of
it held as stacked parameters, so that one batched matmul per layer trains K
seeds at once (the README's "Layout": many models as one computation). Seed k of a `PackedMLP` is
initialized exactly as `nn.Linear` would be (U(-1/sqrt(fan_in), 1/sqrt(fan_in))
for weights and biases) from its own generator, and `unpack(k)` returns it as a
plain `MLP`, so a pack can always be checked against separate trainings.

Arpit et al. 2017 (Sec. 4, Figs 2 and 9): ``cnn``, two blocks of [conv 5x5 (200 filters) ->
BN -> ReLU -> max-pool 3x3 stride 3] then 384 -> 192 dense units with BN and ReLU.

Zhang et al. 2017 (Sec. 2, Table 1; `build` by name): ``mlp1`` (1 x 512) and ``mlp3``
(3 x 512), ``alexnet`` (small AlexNet), ``inception`` / ``inception_nobn`` (small
Inception with and without batch norm) and ``wrn`` (WideResNet, depth and widen
factor configurable, default 28-1). Every model takes its input shape (C, H, W) and
derives its sizes from it: on CIFAR-10 centre-cropped to 28x28x3 the counts are the
paper's; on digits (8x8x1, not resized) the same layers are smaller.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from catalog import ARCHS


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear(num_classes)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int):
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        super().__init__(*layers)


def _update(p, v, a, grad, lr, momentum, weight_decay) -> None:
    """One parameter's SGD update from its gradient a^T grad: v = mu v + g (+ wd p), then
    p -= lr v; each value one for all members, or (K',) per member."""
    if torch.is_tensor(momentum):
        v.mul_(momentum.view(-1, 1, 1)).baddbmm_(a, grad)
    else:
        v.baddbmm_(a, grad, beta=momentum)
    if torch.is_tensor(weight_decay) or weight_decay:
        v.add_(p * (weight_decay.view(-1, 1, 1) if torch.is_tensor(weight_decay) else weight_decay))
    if torch.is_tensor(lr):
        p.sub_(v * lr.view(-1, 1, 1))
    else:
        p.sub_(v, alpha=lr)


class PackedMLP(nn.Module):
    """K MLPs with stacked parameters: weight l is (K, in_l, out_l), bias l is (K, 1, out_l)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, init_seeds: Sequence[int]):
        super().__init__()
        self.in_features, self.hidden, self.num_classes = in_features, list(hidden), num_classes
        self.init_seeds = list(init_seeds)
        sizes = [in_features, *hidden, num_classes]
        per_seed = [_linear_init(sizes, seed) for seed in self.init_seeds]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i][0] for layers in per_seed])) for i in range(len(sizes) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i][1] for layers in per_seed])[:, None, :]) for i in range(len(sizes) - 1)
        )
        self._layers()
        self.register_load_state_dict_post_hook(lambda module, _: module._layers())

    def _layers(self) -> None:
        """The parameters as plain tuples, for the step (a ParameterList's indexing costs ~18 us a
        step, 1% of the digits step): kept in step with the lists by `_apply`, which `.to()`
        uses, whether it changes the tensors in place or replaces them, and after
        `load_state_dict` (which may assign new ones). Assigning into `weights` or `biases`
        directly is not followed: the pack never does."""
        self._w, self._b = tuple(self.weights), tuple(self.biases)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._layers()
        return out

    def hidden_sizes(self) -> list[int]:
        """The width of each hidden layer."""
        return [w.shape[-1] for w in self.weights[:-1]]

    def forward(
        self, x: torch.Tensor, members: torch.Tensor | None = None, masks: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits (K, B, C) for inputs x of shape (K, B, D) (one batch per model) or (B, D) (shared);
        with `members` (indices, K' of them), of those models only: (K', B, C). `masks`: per
        hidden layer a (K', B, width) factor applied after its ReLU (dropout, for batched inputs)."""
        weights, biases = list(self.weights), list(self.biases)
        if members is not None:
            weights, biases = [w[members] for w in weights], [b[members] for b in biases]
        last = len(weights) - 1
        if x.dim() == 2:
            # Shared input: one (B, D) x (D, K*H) GEMM instead of K small ones.
            w0 = weights[0]
            k, d, h = w0.shape
            x = (x @ w0.permute(1, 0, 2).reshape(d, k * h)).view(-1, k, h).transpose(0, 1)
            x = x + biases[0]
            layers = range(1, last + 1)
            if last > 0:
                x = torch.relu(x)
        else:
            layers = range(0, last + 1)
        for i in layers:
            x = torch.baddbmm(biases[i], x, weights[i])
            if i < last:
                x = torch.relu(x) if masks is None else torch.relu(x) * masks[i]
        return x

    @torch.no_grad()
    def sgd_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        lr: float | torch.Tensor,
        momentum: float | torch.Tensor,
        velocity: Sequence[torch.Tensor],
        members: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        weight_decay: float | torch.Tensor = 0.0,
    ) -> torch.Tensor:
        """One SGD step (PyTorch's momentum form: v = mu v + g; p -= lr v) of every member on its own
        batch, x (K', B, D) and labels y (K', B), without autograd; returns the step's logits
        (K', B, C), from before the update, written into `logits` when given (a slice of an
        epoch's buffer: the caller takes the loss and hits of many steps at once, `loss_and_hits`).

        The loss is each member's mean cross-entropy. The backward pass is written out: each
        layer's weight gradient is accumulated straight into its momentum buffer
        (`baddbmm_(..., beta=mu)`), its bias gradient too (the batch's sum as a GEMM with a row of
        ones), and the layer is updated as soon as its gradient exists, while it is still in cache.
        Per step this reads and writes each parameter's memory ~7 times (forward, backward,
        momentum read and write, parameter read and write) where autograd plus a separate optimizer
        pass take ~12 (benchmarks/RUNS.md), in ~24 torch calls for two hidden layers. With
        `members` (indices), only those members step; the others' parameters and momentum stay as
        they are. `velocity` is laid out like `tensors()`: the weights' buffers, then the biases'.

        `lr`, `momentum` and `weight_decay` (L2 as torch.optim.SGD couples it: the gradient plus
        weight_decay times the parameter) are one value for all, or (K',) tensors, one a stepping
        member. This is `engine._sgd`'s update, fused (tests/test_engine.py holds them equal)."""
        weights, biases = self._w, self._b
        n = len(weights)
        vel_w, vel_b = velocity[:n], velocity[n:]
        if members is not None:  # step copies of the running members', then put them back
            weights, biases = [w[members] for w in weights], [b[members] for b in biases]
            vel_w, vel_b = [v[members] for v in vel_w], [v[members] for v in vel_b]
        if logits is not None and logits.shape != (x.shape[0], x.shape[1], self.num_classes):
            raise ValueError(
                f"logits buffer {tuple(logits.shape)}: expected {(x.shape[0], x.shape[1], self.num_classes)}"
            )
        acts, grad = forward_grad(weights, biases, x, y, logits)
        ones = grad.new_ones(grad.shape[0], 1, grad.shape[1])
        for i in reversed(range(n)):
            # ReLU's backward in one op (autograd's own): the gradient where the activation is > 0.
            back = (
                torch.ops.aten.threshold_backward(torch.bmm(grad, weights[i].transpose(1, 2)), acts[i], 0)
                if i > 0
                else None
            )
            for p, v, a in ((weights[i], vel_w[i], acts[i].transpose(1, 2)), (biases[i], vel_b[i], ones)):
                _update(p, v, a, grad, lr, momentum, weight_decay)
            grad = back
        if members is not None:
            for mine, stepped in zip([*self.weights, *self.biases, *velocity], [*weights, *biases, *vel_w, *vel_b]):
                mine.index_copy_(0, members, stepped)
        return acts[-1]

    @torch.no_grad()
    def layer_norms(self) -> dict[str, torch.Tensor]:
        """Frobenius norm of each layer's weight and bias together, per model: name -> (K,). (Each
        norm in one pass, without a squared copy of the weights: half the time of squaring.)"""
        return {
            f"fc{i + 1}": torch.hypot(torch.linalg.vector_norm(w, dim=(1, 2)), torch.linalg.vector_norm(b, dim=(1, 2)))
            for i, (w, b) in enumerate(zip(self.weights, self.biases))
        }

    def tensors(self) -> list[torch.Tensor]:
        """The stacked parameters, member index first."""
        return [*self.weights, *self.biases]

    def buffers_list(self) -> list[torch.Tensor]:
        return []

    def member(self, k: int) -> MLP:
        return self.unpack(k).train(self.training)

    @torch.no_grad()
    def load_member(self, k: int, module: MLP) -> None:
        """Copy a plain `MLP`'s weights into member k (the inverse of `unpack`)."""
        linears = [m for m in module if isinstance(m, nn.Linear)]
        for lin, w, b in zip(linears, self.weights, self.biases):
            w[k].copy_(lin.weight.T)
            b[k, 0].copy_(lin.bias)

    @torch.no_grad()
    def unpack(self, k: int) -> MLP:
        """Model k as a plain `MLP` (a copy, on the same device)."""
        mlp = MLP(self.in_features, self.hidden, self.num_classes).to(self.weights[0].device)
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        for lin, w, b in zip(linears, self.weights, self.biases):
            lin.weight.copy_(w[k].T)
            lin.bias.copy_(b[k, 0])
        return mlp


def forward_grad(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    logits: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The forward half of `PackedMLP.sgd_step` for stacked weights (K, in, out) and biases
    (K, 1, out) on batches x (K, B, D), labels y (K, B): each layer's input after its ReLU (the
    input x first, the logits last, written into `logits` when given) and the gradient of each
    member's mean cross-entropy with respect to its logits, (softmax - one-hot) / B."""
    acts = [x]
    for w, b in zip(weights[:-1], biases[:-1]):
        acts.append(torch.baddbmm(b, acts[-1], w).relu_())
    acts.append(
        torch.baddbmm(biases[-1], acts[-1], weights[-1], out=logits)
        if logits is not None
        else torch.baddbmm(biases[-1], acts[-1], weights[-1])
    )
    grad = torch.softmax(acts[-1], dim=-1)
    grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(grad[..., :1], -1.0)).div_(x.shape[1])
    return acts, grad


def loss_and_hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member, the cross-entropy summed over the examples and the number predicted right,
    for logits (K, N, C) and labels y (K, N): an epoch's steps at once (`PackedMLP.sgd_step`)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(dim=1), (logits.argmax(-1) == y).sum(dim=1)


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


# --- Zhang et al. 2017 architectures --------------------------------------------------------


def build(
    arch: str, input_shape: Sequence[int], num_classes: int, *, wrn_depth: int = 28, wrn_widen: int = 1
) -> nn.Module:
    """A freshly initialized model by name (torch's default init; seed the global RNG or use
    `torch.random.fork_rng` around this call to make it reproducible)."""
    c, h, w = input_shape
    if arch == "mlp1":
        return MLP(c * h * w, [512], num_classes)
    if arch == "mlp3":
        return MLP(c * h * w, [512] * 3, num_classes)
    if arch == "alexnet":
        return SmallAlexNet(c, h, w, num_classes)
    if arch in ("inception", "inception_nobn"):
        return SmallInception(c, num_classes, batch_norm=arch == "inception")
    if arch == "wrn":
        return WideResNet(c, num_classes, depth=wrn_depth, widen=wrn_widen)
    if arch == "cnn":
        return ArpitCNN(c, h, w, num_classes)
    raise ValueError(f"unknown arch {arch!r} (allowed: {', '.join(ARCHS)})")


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class SmallAlexNet(nn.Sequential):
    """Zhang et al.'s small AlexNet (the TensorFlow CIFAR-10 tutorial net): two blocks of
    [conv 5x5, 64 filters, 'same' -> ReLU -> max-pool 3x3 stride 2 -> local response norm],
    then FC 384 -> FC 192 -> linear. On 28x28x3: exactly the paper's 1,387,786 parameters."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int):
        def block(cin: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, 64, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
                nn.LocalResponseNorm(4, alpha=0.001 / 9, beta=0.75),
            ]

        def pooled(n: int) -> int:
            return (n + 2 - 3) // 2 + 1

        flat = 64 * pooled(pooled(height)) * pooled(pooled(width))
        super().__init__(
            *block(channels),
            *block(64),
            nn.Flatten(),
            nn.Linear(flat, 384),
            nn.ReLU(),
            nn.Linear(384, 192),
            nn.ReLU(),
            nn.Linear(192, num_classes),
        )


def _conv_unit(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    """Conv (with bias) -> [BN] -> ReLU: Zhang et al.'s unit ("same" padding at stride 1)."""
    padding = kernel // 2 if stride == 1 else 0
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.ReLU())


class _Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3: int, batch_norm: bool):
        super().__init__()
        self.a = _conv_unit(cin, c1, 1, 1, batch_norm)
        self.b = _conv_unit(cin, c3, 3, 1, batch_norm)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class _Downsample(nn.Module):
    def __init__(self, cin: int, c3: int, batch_norm: bool):
        super().__init__()
        self.conv = _conv_unit(cin, c3, 3, 2, batch_norm)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class SmallInception(nn.Module):
    """Zhang et al.'s small Inception (their Fig. 3): conv 3x3 (96) -> Inception(32, 32) ->
    Inception(32, 48) -> Downsample(80) -> Inception(112, 48) -> Inception(96, 64) ->
    Inception(80, 80) -> Inception(48, 96) -> Downsample(96) -> Inception(176, 160) ->
    Inception(176, 160) -> global mean pool -> linear. Every conv is Conv -> [BN] -> ReLU.

    Parameters on 28x28x3: 1,649,402 without batch norm, exactly the paper's figure; with
    batch norm 1,652,826 (+0.21%: BN's scale and shift, 2 per channel, which the paper's
    single count for both variants leaves out).
    """

    PLAN = (
        ("i", 32, 32),
        ("i", 32, 48),
        ("d", 80, 0),
        ("i", 112, 48),
        ("i", 96, 64),
        ("i", 80, 80),
        ("i", 48, 96),
        ("d", 96, 0),
        ("i", 176, 160),
        ("i", 176, 160),
    )

    def __init__(self, channels: int, num_classes: int, batch_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [_conv_unit(channels, 96, 3, 1, batch_norm)]
        width = 96
        for kind, a, b in self.PLAN:
            if kind == "i":
                layers.append(_Inception(width, a, b, batch_norm))
                width = a + b
            else:
                layers.append(_Downsample(width, a, batch_norm))
                width += a
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        # He initialization (He et al. 2015, "Delving Deep into Rectifiers", Sec. 2.2): N(0, 2 / fan_in)
        # for every conv followed by a ReLU, zero biases. Under torch's default (variance 1/(3 fan_in))
        # the signal shrinks ~6x in variance per conv, so without batch norm the logits barely vary
        # across examples at initialization (std ~2e-5 on digits) and SGD never leaves chance;
        # Zhang et al. train this network without BN to 82% on CIFAR-10. Both variants use it (the
        # ablation also changes the default lr: 0.01 without BN, which diverges at 0.1).
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class _WideBlock(nn.Module):
    """Pre-activation basic block: BN -> ReLU -> conv 3x3 -> BN -> ReLU -> conv 3x3, plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        return self.conv2(torch.relu(self.bn2(out))) + skip


class WideResNet(nn.Module):
    """WideResNet-depth-widen (Zagoruyko & Komodakis 2016), a common addition to Zhang et al.'s
    grid in public code: (depth - 4) / 6 blocks per stage, widths 16k, 32k, 64k."""

    def __init__(self, channels: int, num_classes: int, depth: int = 28, widen: int = 1):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth {depth}: must be 6n + 4 (e.g. 16, 22, 28, 40)")
        n, widths = (depth - 4) // 6, [16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(channels, 16, 3, 1, 1, bias=False)]
        cin = 16
        for stage, width in enumerate(widths):
            for i in range(n):
                layers.append(_WideBlock(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width
        layers += [nn.BatchNorm2d(cin), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class ArpitCNN(nn.Sequential):
    """Arpit et al. 2017's CNN (Sec. 4, Fig. 9): [Conv(200, 5x5, 'same') -> BN -> ReLU ->
    MaxPool(3x3, stride 3)] x 2 -> Dense(384) -> BN -> ReLU -> Dense(192) -> BN -> ReLU ->
    Dense(classes). Pools round up (ceil mode) so 8x8 digits keep a 1x1 map (32 -> 11 -> 4 on
    CIFAR-10). The first convolution is `self[0]` (its filters are Fig. 2)."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int, filters: int = 200):
        def pooled(n: int) -> int:
            return math.ceil((n - 3) / 3) + 1 if n >= 3 else 1

        def block(cin: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, filters, 5, padding=2),
                nn.BatchNorm2d(filters),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=3, ceil_mode=True) if min(height, width) >= 3 else nn.Identity(),
            ]

        h, w = pooled(pooled(height)), pooled(pooled(width))
        super().__init__(
            *block(channels),
            *block(filters),
            nn.Flatten(),
            nn.Linear(filters * h * w, 384),
            nn.BatchNorm1d(384),
            nn.ReLU(),
            nn.Linear(384, 192),
            nn.BatchNorm1d(192),
            nn.ReLU(),
            nn.Linear(192, num_classes),
        )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BN running statistics, no dropout) inside, the previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def layer_norms(model: nn.Module) -> dict[str, float]:
    """Frobenius norm of each module's own parameters (weight and bias together), keyed
    '<module name> <Type>' (e.g. '1 Linear'), in model order; the whole model's norm is the root
    of their sum of squares."""
    out = {}
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            out[f"{name or 'model'} {type(module).__name__}"] = math.sqrt(
                sum(p.detach().double().square().sum().item() for p in params)
            )
    return out
