"""Finding plug-in modules: a package's own modules in name order, then those an environment
variable names (comma-separated). Torch-free, so that both halves of a probe, its measurement
(`sweep/probes/`) and its view (`analysis/probes/`), are found the same way."""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def discover(package: str, path: Iterable[str], env: str, needs: tuple[str, ...], what: str) -> dict[str, ModuleType]:
    """Each module's last name -> the module. ValueError in one line for a module that does not
    import, a name taken twice, or a module that lacks any of the attributes `needs` names."""
    names = [f"{package}.{m.name}" for m in sorted(pkgutil.iter_modules(path), key=lambda m: m.name)]
    found: dict[str, ModuleType] = {}
    for name in names + [n.strip() for n in os.environ.get(env, "").split(",") if n.strip()]:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"{env} names {name!r}, which does not import: {exc}") from None
        key = name.rsplit(".", 1)[-1]
        if key in found:
            raise ValueError(f"two {what}s are named {key!r} ({found[key].__name__}, {name})")
        missing = [a for a in needs if not hasattr(module, a)]
        if missing:
            raise ValueError(f"{what} {name} lacks {', '.join(missing)} (a {what} needs {', '.join(needs)})")
        found[key] = module
    return found
