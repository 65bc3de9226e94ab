"""Trial checkpoints that load without unpickling code.

A checkpoint lives under the results location, which others may be able to write (a
shared bucket or NFS folder). `torch.load(weights_only=True)` accepts only tensors and
plain containers, so the state is encoded to those first: numpy arrays become tensors,
the engine's record dataclasses become tagged dicts, and decoding rebuilds them from a
fixed list of known types. A file that holds anything else fails to load; it cannot run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from trainables.engine import EpochRecord, PackState, SplitScores

_TYPES = {cls.__name__: cls for cls in (EpochRecord, PackState, SplitScores)}
_ARRAY, _TYPE = "__ndarray__", "__type__"


def encode(value: Any) -> Any:
    """`value` with numpy arrays and known dataclasses turned into tensors and tagged dicts."""
    if isinstance(value, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and type(value).__name__ in _TYPES:
        return {
            _TYPE: type(value).__name__,
            **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(encode(v) for v in value)
    return value


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(value, dict):
        if _ARRAY in value:
            return value[_ARRAY].numpy()
        if _TYPE in value:
            cls = _TYPES[value[_TYPE]]
            return cls(**{k: decode(v) for k, v in value.items() if k != _TYPE})
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(decode(v) for v in value)
    return value


def save(state: dict[str, Any], path: str) -> None:
    torch.save(encode(state), path)


def load(path: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state `save` wrote; refuses (UnpicklingError) anything but tensors and plain containers."""
    return decode(torch.load(path, map_location=device, weights_only=True))
