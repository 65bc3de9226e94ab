"""What every spec type shares: the strict base model and the upper bounds on sizes.

Its own module so that the probe plug-ins (`sweep/probes/`) declare their configs with the same
rules as `sweep.spec`, which builds `ProbesSpec` from them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # allow_inf_nan=False: a NaN or infinite float anywhere in a spec is an error (an lr of .inf
    # would train to NaN losses).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# Upper bounds on sizes, so that a typo (seeds=1000000000) is an error, not a MemoryError in the
# plan expansion or a trial that can never fit. Generous for real studies: a memorization estimate
# needs thousands of models, a CIFAR-10 run hundreds of epochs.
MAX_SEEDS = 100_000
MAX_EPOCHS = 100_000
MAX_TRIALS = 100_000  # trials in one sweep's plan
MAX_WIDTH = 65_536  # hidden units of one layer
MAX_BATCH = 1_000_000
MAX_LIST = 10_000  # entries of a list key (epochs, sigmas, ...)
