"""Critical sample ratio by Langevin adversarial sample search (Arpit et al. 2017, Fig. 9): the
fraction of the first `n` images of a split whose prediction changes inside an L-inf box of
radius r, every `every` epochs. alpha, beta and r are in pixel units ([0, 1] intensities)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from analysis.plugins import epochs_text
from catalog import LASS_ALPHA, LASS_BETA, LASS_ITERS, LASS_R
from sweep.bounds import MAX_EPOCHS, Strict
from sweep.probes import Run, row
from sweep.seeding import derive_seed

TABLE = "probes"


class Config(Strict):
    """Critical sample ratio by LASS (Arpit et al. 2017, Fig. 9); alpha, beta, r in [0, 1] pixel units."""

    every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 5  # epochs
    n: Annotated[int, Field(ge=1, le=1_000_000)] = 500  # samples of the split searched (the first n)
    split: Literal["test", "val", "train"] = "test"
    alpha: Annotated[float, Field(gt=0)] = LASS_ALPHA
    beta: Annotated[float, Field(ge=0)] = LASS_BETA
    r: Annotated[float, Field(gt=0)] = LASS_R
    iters: Annotated[int, Field(ge=1, le=10_000)] = LASS_ITERS


def splits(config: Config) -> set[str]:
    return {config.split}


def check_epochs(config: Config, scored: tuple[int, ...]) -> None:
    if not any(e % config.every == 0 for e in scored):
        raise ValueError(
            f"probes.csr.every={config.every} falls on none of the epochs this sweep scores "
            f"({epochs_text(scored)}), the only ones after which it probes"
        )


def on_epoch(run: Run, config: Config, member, k: int, epoch: int) -> list[dict]:
    if epoch % config.every:
        return []
    import torch

    from trainables import probes

    x = run.data.split(config.split).x[: config.n]
    gen = torch.Generator().manual_seed(derive_seed(run.seed, "lass", f"{run.seeds[k]}:{epoch}"))
    c = config
    out = probes.critical_sample_ratio(
        member(), x, pixel_scale=run.data.pixel_scale, alpha=c.alpha, beta=c.beta, r=c.r, iters=c.iters, generator=gen
    )
    return [row(k, "csr", epoch, out.ratio, split=c.split, n=len(x))]


def at_end(run: Run, config: Config, member, k: int, epoch: int) -> list[dict]:
    return []
