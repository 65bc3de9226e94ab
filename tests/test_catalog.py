"""The catalog is the one list of architectures, corruption kinds and data sets: the models, the
spec, the corruptions, the data loaders and the figures must agree with it."""

import math
import subprocess
import sys

import pytest

import catalog
from catalog import Corruption
from sweep import spec as S


def test_models_build_every_arch_with_the_catalogs_parameter_count():
    from trainables import models

    for arch in catalog.ARCHITECTURES.values():
        model = models.build(arch.name, catalog.PAPER_INPUT, 10)
        assert models.param_count(model) == arch.params, arch.name
        has_conv = any(m.__class__.__name__.startswith("Conv") for m in model.modules())
        assert has_conv == arch.conv, arch.name


def test_the_spec_offers_exactly_the_catalogs_names():
    assert set(S.LrByArch.model_fields) == set(catalog.ARCHS)
    assert {a: getattr(S.LrByArch(), a) for a in catalog.ARCHS} == catalog.DEFAULT_LR
    assert set(S.DATASET_SHAPES) == set(catalog.DATASETS)
    for kind in catalog.KINDS:  # every kind is accepted by the grids' corruptions
        S.validate(
            {"name": "x", "engine": "interpolate", "dataset": "digits", "archs": ["mlp1"], "corruptions": [kind]}
        )


def test_every_kind_is_implemented_and_changes_what_the_catalog_says():
    import torch

    from trainables import corruption
    from trainables import data as datasets

    digits = datasets.load("digits", "", torch.device("cpu"))
    for kind in catalog.KINDS:
        c = Corruption.parse(kind)
        out, mask = corruption.apply(digits, c.kind, c.p, seed=1)
        images = not torch.equal(out.train.x, digits.train.x)
        labels = not torch.equal(out.train.y, digits.train.y)
        assert images == c.changes_images, kind
        assert labels == (kind == "randY"), kind
        assert bool(mask.any()) == (kind != "real"), kind


def test_every_dataset_has_the_catalogs_shape():
    import torch

    from trainables import data as datasets

    d = catalog.DATASET_TABLE["digits"]
    digits = datasets.load("digits", "", torch.device("cpu"))
    assert (tuple(digits.input_shape), digits.num_classes, len(digits.train)) == (d.shape, d.classes, d.train_size)
    assert len(digits.test) == d.test_size == 360
    assert catalog.DATASET_TABLE["synthetic"].shape == catalog.DATASET_TABLE["cifar10"].shape


@pytest.mark.parametrize(
    "text, kind, p, back",
    [
        ("real", "real", 0.0, "real"),
        ("randY", "randY", 1.0, "randY:1.0"),
        ("randY:0.3", "randY", 0.3, "randY:0.3"),
        ("randX:0", "randX", 0.0, "randX:0.0"),
        ("gaussian", "gaussian", 1.0, "gaussian"),
        ("shuffled_pixels", "shuffled_pixels", 1.0, "shuffled_pixels"),
    ],
)
def test_corruption_parses_and_writes_back(text, kind, p, back):
    c = Corruption.parse(text)
    assert (c.kind, c.p, str(c)) == (kind, p, back)
    assert Corruption.parse(str(c)) == c


@pytest.mark.parametrize(
    "text, says",
    [
        ("randZ", "unknown corruption 'randZ'"),
        ("gaussian:0.5", "only randX and randY take a level"),
        ("randY:x", "must be a number"),
        ("randY:1.5", "outside [0, 1]"),
        ("randY:nan", "outside [0, 1]"),
        ("real:0.2", "only randX and randY"),
    ],
)
def test_bad_corruptions_say_what_is_allowed(text, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        Corruption.parse(text)


def test_both_spec_families_hand_the_trial_a_corruption():
    fig1 = S.validate({"name": "f", "engine": "packed", "dataset": "digits", "corruption": {"p": 0.4}})
    assert [fig1.corruption_of(v) for v in fig1.variants] == [
        Corruption("real", 0.0),
        Corruption("randX", 0.4),
        Corruption("randY", 0.4),
    ]
    grid = S.validate(
        {
            "name": "g",
            "engine": "interpolate",
            "dataset": "digits",
            "archs": ["mlp1"],
            "corruptions": ["real", "randY:0.4", "gaussian"],
        }
    )
    assert [grid.corruption_of(v) for v in grid.corruptions] == [
        Corruption("real", 0.0),
        Corruption("randY", 0.4),
        Corruption("gaussian", 1.0),
    ]
    assert S.input_groups(grid.corruptions) == {"labels": ["real", "randY:0.4"], "gaussian": ["gaussian"]}


def test_the_catalog_imports_without_torch_or_ray():
    code = (
        "import sys, catalog, analysis.figures, analysis.schema; "
        "bad = [m for m in ('torch', 'ray', 'trainables') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_colours_are_distinct_and_levels_ordered():
    arch = [a.colour for a in catalog.ARCHITECTURES.values()]
    assert len(set(arch)) == len(arch)
    kinds = [k.colour for k in catalog.KIND_TABLE.values()]
    assert len(set(kinds)) == len(kinds)
    lum = [sum(int(catalog.level_colour(p)[i : i + 2], 16) for i in (1, 3, 5)) for p in (0, 0.25, 0.5, 0.75, 1)]
    assert lum == sorted(lum, reverse=True) and len(set(lum)) == 5  # darker as p grows
    assert math.isclose(Corruption.parse("randY:1").p, 1.0)


def test_the_regularizers_are_one_list():
    """The spec's `regularizers` group, the engine's per-member hyperparameters and the axes that
    pack together all take the catalog's names."""
    from catalog import REGULARIZERS, SGD_HYPER
    from sweep import axes
    from sweep import spec as specs
    from trainables import engine

    assert tuple(specs.RegularizersSpec.model_fields) == REGULARIZERS
    assert engine.HYPER == (*SGD_HYPER, *REGULARIZERS)
    assert set(axes.MEMBER_KEYS.values()) == set(engine.HYPER)
