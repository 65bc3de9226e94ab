"""Finding plug-in modules: a package's own modules in name order, then those an environment
variable names (comma-separated). Torch-free, so that both halves of a probe, its measurement
(`sweep/probes/`) and its view (`analysis/probes/`), are found the same way."""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterable
from types import ModuleType

TABLES = ("probes", "filters")  # the store tables a probe may write
PROBES_ENV, VIEWS_ENV = "MEMSWEEP_PROBES", "MEMSWEEP_PROBE_VIEWS"  # plug-ins kept outside this repository


class PluginError(ValueError):
    """A plug-in that cannot be used; the message is one line naming it."""


def discover(package: str, path: Iterable[str], env: str, needs: tuple[str, ...], what: str) -> dict[str, ModuleType]:
    """Each module's last name -> the module. PluginError in one line for a module that fails to
    import, a name taken twice, a module that lacks any of the attributes `needs` names, or a
    TABLE the store does not have."""
    names = [f"{package}.{m.name}" for m in sorted(pkgutil.iter_modules(path), key=lambda m: m.name)]
    named = [n.strip() for n in os.environ.get(env, "").split(",") if n.strip()]
    found: dict[str, ModuleType] = {}
    for name in names + named:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any error in a plug-in's module body: said in one line, naming it
            where = f"{env} names {name!r}, which" if name in named else f"{what} module {name}"
            raise PluginError(f"{where} fails to import: {type(exc).__name__}: {exc}") from None
        key = name.rsplit(".", 1)[-1]
        if key in found:
            raise PluginError(f"two {what}s are named {key!r} ({found[key].__name__}, {name})")
        missing = [a for a in needs if not hasattr(module, a)]
        if missing:
            raise PluginError(f"{what} {name} lacks {', '.join(missing)} (a {what} needs {', '.join(needs)})")
        if module.TABLE not in TABLES:
            raise PluginError(f"{what} {name}: TABLE = {module.TABLE!r}, not one of {', '.join(TABLES)}")
        found[key] = module
    return found


def epochs_text(epochs, keep: int = 8) -> str:
    """Epochs as a message or note lists them: all of a list of up to `keep`, else the first
    `keep` - 2, then '...' and the last."""
    epochs = list(epochs)
    shown = epochs if len(epochs) <= keep else [*epochs[: keep - 2], "...", epochs[-1]]
    return ", ".join(map(str, shown))
