"""The presets: one YAML file each in this folder, resolved into a validated spec.

A preset is data: the spec's keys, plus an optional ``per_dataset`` block of defaults for a data
set, applied after the preset's own keys and the family's data-set defaults and before the user's
``--set`` overrides (`resolve`).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import yaml

from analysis.safe_yaml import AliasError, read_yaml
from catalog import DATASETS
from sweep.spec import DATASET_SHAPES, Spec, SpecError, set_path, spec_class, validate


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("sweep.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        raise SpecError(f"unknown preset {name!r} (available: {', '.join(names)})")
    return yaml.safe_load(resources.files("sweep.presets").joinpath(f"{name}.yaml").read_text())


def parse_override(text: str) -> tuple[str, Any]:
    """'model.hidden=[512, 512]' -> ('model.hidden', [512, 512]); values are YAML without anchors or
    aliases, except a sweep's name, which is a string as typed ('2024', 'yes', 'a #b')."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"bad --set {text[:200]!r}: expected KEY=VALUE, e.g. --set seeds=8")
    if key == "name":
        return key, raw
    try:
        value = read_yaml(raw) if raw.strip() else None
    except AliasError:
        raise SpecError(f"bad --set {key}={raw[:200]!r}: YAML anchors and aliases (& and *) are not allowed") from None
    except yaml.YAMLError as exc:
        hint = "; a key in {...} needs a space after its colon, {key: value}" if re.search(r"\w:[^\s/]", raw) else ""
        raise SpecError(f"bad --set {key}={raw[:200]!r}: not a YAML value ({str(exc).splitlines()[0]}){hint}") from None
    return key, _numbers(value)


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads '1e-3' as a string; users mean a number, also inside a grid's lists."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


# Data-set defaults of a spec family, applied after a preset's own keys and before its
# `per_dataset` block (which can override them), so presets hold only what differs.
FAMILY_DATASET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    # Digits (1,437 images) at batch 128 has 12 steps an epoch, and with the paper's 0.95 decay
    # per epoch the learning rate vanishes first: measured, mlp1/mlp3/AlexNet reached 98.5-99.9%
    # on true labels and 15-26% on random labels after 300 epochs, none interpolated. At batch 16
    # (90 steps an epoch) with a constant rate all of them do. Images stay 8x8x1 (no crop); the
    # models size themselves from the input.
    "interpolate": {
        "digits": {"preprocess": {"crop": None}, "batch_size": 16, "optimizer": {"lr_decay": 1.0}, "max_epochs": 400},
        # The 28x28 sets (60,000 images): a grid that must interpolate trains on the first
        # 2,000 on a CPU (measured on Fashion-MNIST, 2 cores: mlp1 fits true labels in 27
        # epochs and random ones in 57, at batch 32 with a constant rate; 0.95 a epoch
        # decays the rate before random labels fit). --set train_size=null for all 60,000.
        **{
            name: {"train_size": 2000, "batch_size": 32, "optimizer": {"lr_decay": 1.0}}
            for name in ("fashion-mnist", "mnist", "kmnist")
        },
    }
}


def resolve(preset: str, dataset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """The validated spec: preset keys, then the family's and the preset's per_dataset defaults,
    then the overrides."""
    raw = load_preset(preset)
    per_dataset = raw.pop("per_dataset", {}) or {}
    raw.setdefault("name", preset)
    pairs = [parse_override(o) for o in overrides]
    chosen = dict(pairs).get("dataset", dataset or raw.get("dataset", "cifar10"))
    if dataset is not None and "dataset" in dict(pairs) and dict(pairs)["dataset"] != dataset:
        raise SpecError(f"--dataset {dataset} and --set dataset={dict(pairs)['dataset']} disagree")
    if chosen not in DATASET_SHAPES:
        raise SpecError(f"unknown dataset {chosen!r} (allowed: {', '.join(DATASETS)})")
    tree = dict(raw, dataset=chosen)
    model = spec_class(tree)
    family = FAMILY_DATASET_DEFAULTS.get(tree.get("engine", "packed"), {}).get(chosen, {})
    for key, value in _flatten(family) + _flatten(per_dataset.get(chosen, {})):
        set_path(tree, key, value, model)
    for key, value in pairs:
        set_path(tree, key, value, model)
    return validate(tree)


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and not (prefix == "" and key in ("grid", "sample")):  # those are set whole
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out
