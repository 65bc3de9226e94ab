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


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader (its standard types only: no Python objects) without anchors and aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            raise AliasError(f"YAML anchors and aliases (& and *) are not allowed{self.peek_event().start_mark}")
        return super().compose_node(parent, index)


def read_yaml(text: str) -> Any:
    """A YAML document as plain values (safe types only, no anchors or aliases); yaml.YAMLError
    if not (AliasError for an anchor or alias; nesting too deep to parse is an error too)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a value repeated is written out again
        return True


def write_yaml(value: Any) -> str:
    """`value` (plain data) as a YAML document without anchors, keys in their given order."""
    return yaml.dump(value, Dumper=_PlainDumper, sort_keys=False)
