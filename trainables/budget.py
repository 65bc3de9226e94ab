"""The packed MLP's memory model: pack sizes and scoring chunks from a memory budget.

Plain arithmetic (no torch), so that the driver can plan a sweep without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

BYTES = 4  # float32


def mlp_param_count(in_features: int, hidden: Sequence[int], num_classes: int) -> int:
    sizes = [in_features, *hidden, num_classes]
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def memory_per_seed(in_features: int, hidden: Sequence[int], num_classes: int, batch_size: int) -> int:
    """Bytes one seed of a pack needs while training: parameters, gradients and momentum
    (3 x params), plus the step's activations (input gather, pre- and post-activations
    and their gradients: about B x (D + 4 x sum(hidden) + 3 x C))."""
    params = mlp_param_count(in_features, hidden, num_classes)
    activations = batch_size * (in_features + 4 * sum(hidden) + 3 * num_classes)
    return BYTES * (3 * params + activations)


def auto_pack_size(
    budget_bytes: int, seeds: int, in_features: int, hidden: Sequence[int], num_classes: int, batch_size: int
) -> int:
    """Largest K <= seeds whose training state fits in `budget_bytes` (at least 1).

    Scoring is done in chunks sized from what the budget leaves (`score_chunk`),
    so it does not raise the peak.
    """
    per_seed = memory_per_seed(in_features, hidden, num_classes, batch_size)
    return max(1, min(seeds, budget_bytes // per_seed))


def last_level_cache_bytes() -> int:
    """The CPU's largest cache, bytes, from Linux sysfs; 32 MiB where it cannot be read."""
    return _last_level_cache()[0]


def _last_level_cache() -> tuple[int, int]:
    """(bytes, CPUs sharing it) of cpu0's largest cache, from Linux sysfs; (32 MiB, 1) unread."""
    best = (0, 1)
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            shared = (index / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        size = int(text.rstrip("KMG")) * unit if text.rstrip("KMG").isdigit() else 0
        if size > best[0]:
            best = (size, _count_cpus(shared))
    return best if best[0] else (32 * 2**20, 1)


def _count_cpus(cpu_list: str) -> int:
    """'0-3,8-11' -> 8."""
    count = 0
    for part in cpu_list.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            count += int(hi) - int(lo) + 1 if hi.strip().isdigit() else 1
    return max(1, count)


def cache_share_bytes(cpus_per_trial: float) -> int:
    """A trial's share of the last-level cache: the cache's size x the trial's CPUs / the CPUs
    that share that cache (an EPYC's 32 MiB L3 serves 8 cores of a CCX, not the whole chip)."""
    size, sharing = _last_level_cache()
    return int(size * min(1.0, max(cpus_per_trial, 1e-3) / sharing))


# At most this many bytes of parameters and momentum a pack on a CPU, whatever the cache says: 8
# seeds of the digits 2 x 512 MLP (2.4 MB each) already pay PyTorch's per-op cost once for 8 models.
# Measured 2026-12-02 on a 2-core Xeon VM whose sysfs shows a 480 MiB L3 (which moved 36-38 GB/s, no
# faster than from 2 MiB up): 48.7 / 47.0 / 42.1 / 41.7 / 40.7 / 40.7 ms per seed-epoch for packs
# of 4 / 6 / 8 / 10 / 12 / 16 (one trial, 1 thread), and the digits fig1 preset end to end, two
# trials at once, 23.0 s with the packs of 50 that the cache rule alone gave there against
# 15.6-18.4 s with packs of 8. Small models still pack by the hundred (memorization's 64-128-10
# MLP: 77 KB a seed).
CPU_PACK_BYTES = 20 * 2**20


def cache_pack_size(
    seeds: int,
    in_features: int,
    hidden: Sequence[int],
    num_classes: int,
    *,
    sharers: int = 1,
    cache_bytes: int | None = None,
) -> int:
    """Seeds per pack on a CPU: as many as keep the pack's parameters and momentum (2 x params
    floats a seed) within half of this trial's share of the last-level cache (`cache_bytes` /
    `sharers`; by default the whole cache), at least 1, and at most CPU_PACK_BYTES of them.

    A small-batch MLP step reads and writes every parameter and its momentum; once they spill
    to DRAM the step waits on memory. Measured on a 2-core EPYC (32 MiB L3), 2 x 512 MLP on
    digits, two trials at once: 51 / 55 / 65 / 70 ms per seed for packs of 2 / 5 / 10 / 20."""
    cache = cache_bytes or last_level_cache_bytes()
    per_seed = 2 * BYTES * mlp_param_count(in_features, hidden, num_classes)
    return max(1, min(seeds, CPU_PACK_BYTES // per_seed, cache // (2 * max(1, sharers) * per_seed)))


# Scoring on a CPU: chunks whose widest activation, K x chunk x width floats, stays about this
# size (L2-sized). 1,797 digits examples at K = 10, 1 thread, 2-core Xeon VM (2 MiB L2 a core):
# 7.1 / 7.8 / 9.5 / 13.5 ms a seed in chunks of 128 / 256 / 1,024 / 2,048 (the rule gives 64 there).
CPU_SCORE_BYTES = 2**20


def cpu_score_chunk(k: int, in_features: int, hidden: Sequence[int]) -> int:
    """Examples per scoring chunk on a CPU: K x chunk x widest layer floats ~ CPU_SCORE_BYTES,
    at least 64."""
    return max(64, CPU_SCORE_BYTES // (k * BYTES * max([in_features, *hidden])))


def score_chunk(
    budget_bytes: int,
    k: int,
    in_features: int,
    hidden: Sequence[int],
    num_classes: int,
    batch_size: int,
    cpu: bool = False,
) -> int:
    """Examples per scoring chunk: what the budget leaves after the training state, spent on
    K x chunk x (2 x widest layer + 3 x C) floats of transient activations; at least 256. With
    `cpu`, no more than `cpu_score_chunk` (activations that stay in cache)."""
    left = budget_bytes - k * memory_per_seed(in_features, hidden, num_classes, batch_size)
    per_example = k * BYTES * (2 * max([in_features, *hidden]) + 3 * num_classes)
    chunk = int(max(256, left // per_example))
    return min(chunk, cpu_score_chunk(k, in_features, hidden)) if cpu else chunk
