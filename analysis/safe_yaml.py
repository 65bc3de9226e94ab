"""YAML as plain data: what memsweep reads from a spec override or a results location, and writes there.

A results location may be shared (NFS, a bucket), so its YAML is untrusted: only the safe types,
and no anchors or aliases, since a few hundred characters of nested aliases expand to gigabytes
wherever the value is walked (a hash, a repr, a validation). What memsweep writes has none.
"""

from __future__ import annotations

from typing import Any

import yaml


class AliasError(yaml.YAMLError):
    """The YAML uses an anchor or an alias."""


# libyaml's parser where PyYAML was built with it (a 5,000-trial manifest: ~0.1 s, not ~6 s).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> Any:
    """A YAML document as plain values (safe types only, no anchors or aliases); yaml.YAMLError
    if not (AliasError for an anchor or alias; nesting too deep to parse is an error too). The
    events are checked before anything is built from them."""
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise AliasError(f"YAML anchors and aliases (& and *) are not allowed{event.start_mark}")
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


class _PlainDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    def ignore_aliases(self, data: Any) -> bool:  # a value repeated is written out again
        return True


def write_yaml(value: Any) -> str:
    """`value` (plain data) as a YAML document without anchors, keys in their given order."""
    return yaml.dump(value, Dumper=_PlainDumper, sort_keys=False)
