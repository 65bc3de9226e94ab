"""K models of one architecture held as one: every parameter and buffer has the member index
as its leading axis (K, ...), so one forward pass serves K = 1 and K = 1,000 alike.

- `PackedMLP` (models.py): the MLPs, by stacked batched matmuls.
- `FuncPack`: any `nn.Module` (the CNNs, with per-member batch-norm statistics) through
  `torch.func` (`stack_module_state` + `functional_call`), run either under `vmap` or as a
  plain loop over members on slices of the same stacked tensors. Which is faster depends on
  the network and the device (measured on 2 CPU threads, 6 members, batch 16 on 8x8 digits:
  vmap 11 vs loop 17 ms per step for AlexNet, 27 vs 60 for WRN, 98 vs 104 for Inception, but
  93 vs 43 for Arpit et al.'s CNN), so `choose_mode` times both on the pack's first batch.

Every pack offers `forward(x (K, B, ...)) -> (K, B, C)`, `tensors()` (the stacked parameters),
`buffers_list()`, `layer_norms() -> {layer: (K,)}`, `member(k) -> nn.Module` (a copy, for
probes) and `train()/eval()`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import models

MODES = ("vmap", "loop")


class FuncPack(nn.Module):
    """K copies of one architecture with stacked parameters and buffers."""

    def __init__(self, members: Sequence[nn.Module], mode: str = "vmap"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown pack mode {mode!r} (allowed: {', '.join(MODES)})")
        params, buffers = stack_module_state(list(members))
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.params = nn.ParameterList(nn.Parameter(params[n].detach().clone()) for n in self.names)
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"b{i}", buffers[n].clone())
        # The architecture without storage, called functionally; not a registered submodule, so
        # that `.to(device)` moves only the stacked tensors.
        object.__setattr__(self, "base", copy.deepcopy(members[0]).to("meta"))
        self.mode = mode
        self.k = len(members)

    def buffers_list(self) -> list[torch.Tensor]:
        return [getattr(self, f"b{i}") for i in range(len(self.buffer_names))]

    def tensors(self) -> list[torch.Tensor]:
        return list(self.params)

    def train(self, mode: bool = True) -> FuncPack:
        super().train(mode)
        self.base.train(mode)
        return self

    def _call(self, params, buffers, x):
        return functional_call(
            self.base, ({**dict(zip(self.names, params)), **dict(zip(self.buffer_names, buffers))}), (x,)
        )

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (K, B, C) for inputs x (K, B, ...): member k sees x[k]. With `members` (indices,
        K' of them; x is then (K', B, ...)), only those run: a stopped member costs nothing, and
        in training mode only their batch-norm statistics move."""
        params, buffers = list(self.params), self.buffers_list()
        if self.mode == "loop":
            ks = range(self.k) if members is None else members.tolist()
            return torch.stack(
                [self._call([p[k] for p in params], [b[k] for b in buffers], x[i]) for i, k in enumerate(ks)]
            )
        if members is None:
            return vmap(self._call, in_dims=(0, 0, 0), randomness="different")(params, buffers, x)
        subset = [b[members] for b in buffers]  # copies: written back after the call
        out = vmap(self._call, in_dims=(0, 0, 0), randomness="different")([p[members] for p in params], subset, x)
        if self.training:
            with torch.no_grad():
                for b, part in zip(buffers, subset):
                    b[members] = part
        return out

    @torch.no_grad()
    def member(self, k: int) -> nn.Module:
        """Member k as a plain module (a copy, on the pack's device)."""
        module = copy.deepcopy(self.base).to_empty(device=self.params[0].device)
        state = {
            **{n: p[k] for n, p in zip(self.names, self.params)},
            **{n: b[k] for n, b in zip(self.buffer_names, self.buffers_list())},
        }
        module.load_state_dict(state)
        return module.train(self.training)

    @torch.no_grad()
    def load_member(self, k: int, module: nn.Module) -> None:
        """Copy a plain module's parameters and buffers into member k."""
        state = module.state_dict()
        for n, p in zip(self.names, self.params):
            p[k].copy_(state[n])
        for n, b in zip(self.buffer_names, self.buffers_list()):
            b[k].copy_(state[n])

    @torch.no_grad()
    def layer_norms(self) -> dict[str, torch.Tensor]:
        """Frobenius norm of each module's own parameters, per member, keyed as
        `models.layer_norms` keys them ('<module name> <Type>'): name -> (K,)."""
        owner: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            module_name = name.rsplit(".", 1)[0] if "." in name else ""
            owner.setdefault(module_name, []).append(i)
        types = dict(self.base.named_modules())
        return {
            f"{m or 'model'} {type(types[m]).__name__}": sum(
                self.params[i].detach().double().square().flatten(1).sum(1) for i in idx
            ).sqrt()
            for m, idx in owner.items()
        }


def build(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    init_seeds: Sequence[int],
    *,
    hidden: Sequence[int] | None = None,
    wrn_depth: int = 28,
    wrn_widen: int = 1,
    mode: str = "vmap",
) -> nn.Module:
    """A pack of K = len(init_seeds) freshly initialized models; member k is initialized from
    init_seeds[k] alone, so it is the same model whatever pack it sits in. MLPs ('mlp' with
    `hidden`, mlp1, mlp3) become a `PackedMLP`; every other architecture a `FuncPack`."""
    c, h, w = input_shape
    widths = {"mlp": hidden, "mlp1": [512], "mlp3": [512] * 3}
    if arch in widths:
        return models.PackedMLP(c * h * w, widths[arch], num_classes, init_seeds)
    members = []
    for seed in init_seeds:
        with torch.random.fork_rng(devices=[]):  # the init seed, without touching the caller's RNG
            torch.manual_seed(seed)
            members.append(models.build(arch, input_shape, num_classes, wrn_depth=wrn_depth, wrn_widen=wrn_widen))
    return FuncPack(members, mode)


def choose_mode(pack: nn.Module, x: torch.Tensor, repeats: int = 3) -> str:
    """'vmap' or 'loop', whichever runs a forward and backward pass of x (K, B, ...) faster on this
    device (for a `PackedMLP`, always 'bmm'). Gradients are cleared afterwards."""
    if not isinstance(pack, FuncPack):
        return "bmm"
    saved = [b.clone() for b in pack.buffers_list()]  # the timing passes must not move BN statistics
    times = {}
    for mode in MODES:
        pack.mode = mode
        best = float("inf")
        for _ in range(repeats + 1):  # the first run warms up
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            pack(x).float().sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        times[mode] = best
    for p in pack.tensors():
        p.grad = None
    with torch.no_grad():
        for b, old in zip(pack.buffers_list(), saved):
            b.copy_(old)
    pack.mode = min(times, key=times.get)
    return pack.mode
