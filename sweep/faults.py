"""Test-only fault injection: crash a trial's process at a named point, once.

Off unless the environment sets MEMSWEEP_FAULT="<point>:<marker file>". At <point> the
process exits abruptly (os._exit, as a killed worker would) if the marker file does not
exist yet, creating it first, so the retried trial runs through. Points:
``after-examples`` and ``after-epochs`` (between a fragment's table writes).
"""

from __future__ import annotations

import os
from pathlib import Path


def maybe_crash(point: str) -> None:
    spec = os.environ.get("MEMSWEEP_FAULT")
    if not spec:
        return
    wanted, _, marker = spec.partition(":")
    if wanted == point and marker and not Path(marker).exists():
        Path(marker).write_text(point)
        os._exit(3)
