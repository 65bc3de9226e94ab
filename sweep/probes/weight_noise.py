"""Accuracy under log-normal weight noise after training: every parameter multiplied by
exp(sigma * N(0, 1)), averaged over `draws` draws per sigma, on each of `splits` (the training
split with each member's own labels; in a subset sweep, the examples the member trained on)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from sweep.bounds import MAX_LIST, Strict
from sweep.probes import Run, row
from sweep.seeding import derive_seed

TABLE = "probes"


class Config(Strict):
    """Accuracy under log-normal weight noise exp(sigma * N(0, 1)), after training."""

    sigmas: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=2, max_length=MAX_LIST)] = [
        0.0,
        0.05,
        0.1,
        0.2,
        0.3,
        0.5,
        0.7,
        1.0,
        1.5,
    ]
    draws: Annotated[int, Field(ge=1, le=10_000)] = 5
    splits: Annotated[list[Literal["train", "test", "val"]], Field(min_length=1)] = ["train", "test"]

    @field_validator("sigmas")
    @classmethod
    def _from_zero(cls, v: list[float]) -> list[float]:
        if v[0] != 0 or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must start at 0 (the model itself, what accuracy halves from) and increase")
        return v


def splits(config: Config) -> set[str]:
    return set(config.splits)


def on_epoch(run: Run, config: Config, member, k: int, epoch: int) -> list[dict]:
    return []


def at_end(run: Run, config: Config, member, k: int, epoch: int) -> list[dict]:
    import torch

    from trainables import probes

    data = {s: (run.data.split(s).x, run.data.split(s).y) for s in config.splits}
    if "train" in data:  # the member's own labels, on the examples it trained on
        x, y, rows = data["train"][0], run.train_labels(k), run.train_rows(k)
        data["train"] = (x, y) if rows is None else (x[rows], y[rows])
    gen = torch.Generator().manual_seed(derive_seed(run.seed, "weight-noise", run.seeds[k]))
    return [
        row(
            k,
            "weight_noise",
            epoch,
            r["acc"],
            split=r["split"],
            n=len(data[r["split"]][1]),
            sigma=r["sigma"],
            draw=r["draw"],
        )
        for r in probes.weight_noise_accuracy(member(), data, config.sigmas, config.draws, generator=gen)
    ]
