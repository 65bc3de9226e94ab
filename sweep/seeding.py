"""The seed rule: every random stream of a sweep is derived from its base ``seed``.

Seed index s (0 <= s < ``seeds``) of every cell trains with ``init = derive_seed(seed, "init", s)``
(model initialization) and ``order = derive_seed(seed, "order", s)`` (data shuffling); a cell's
corruption is drawn once from ``derive_seed(seed, "corruption", cell)``, shared by all its seeds,
so that P(correct) compares runs on the same data set. Subsets, validation splits, samples of the
hyperparameter axes and the probes' noise draw from their own named streams likewise.
"""

from __future__ import annotations

import hashlib


def derive_seed(base: int, stream: str, index: int | str) -> int:
    """A 63-bit seed: the first 8 bytes of sha256("memsweep:{base}:{stream}:{index}"), mod 2**63."""
    digest = hashlib.sha256(f"memsweep:{base}:{stream}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63
