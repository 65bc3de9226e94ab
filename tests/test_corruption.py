"""randX / randY: the fraction is close to p, the draw is fixed by the seed, the mask is right."""

import pytest
import torch

from trainables import corruption
from trainables import data as datasets


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


@pytest.mark.parametrize("kind", ["randX", "randY"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_fraction_close_to_p(digits, kind, p):
    _, mask = corruption.apply(digits, kind, p, seed=7)
    n = len(mask)  # 1,437: the std of the fraction is at most 0.013
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert abs(mask.float().mean().item() - p) < 0.05


@pytest.mark.parametrize("kind", ["randX", "randY"])
def test_deterministic_per_seed(digits, kind):
    a, mask_a = corruption.apply(digits, kind, 0.5, seed=1)
    b, mask_b = corruption.apply(digits, kind, 0.5, seed=1)
    c, mask_c = corruption.apply(digits, kind, 0.5, seed=2)
    assert torch.equal(mask_a, mask_b) and torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(mask_a, mask_c)


def test_randY_mask_marks_exactly_the_redrawn_labels(digits):
    new, mask = corruption.apply(digits, "randY", 0.5, seed=3)
    assert torch.equal(new.train.y[~mask], digits.train.y[~mask])  # unselected: untouched
    changed = (new.train.y[mask] != digits.train.y[mask]).float().mean().item()
    assert 0.85 < changed < 0.95  # uniform over 10 classes: ~90% differ from the original
    assert torch.equal(new.train.x, digits.train.x)
    assert torch.bincount(new.train.y[mask], minlength=10).min() > 40  # all classes drawn (~72 each)


def test_randX_replaces_inputs_with_matching_gaussian(digits):
    new, mask = corruption.apply(digits, "randX", 1.0, seed=4)
    assert mask.all()
    assert torch.equal(new.train.y, digits.train.y)
    noise, x = new.train.x, digits.train.x
    assert abs(noise.mean().item() - x.mean().item()) < 0.01
    assert abs(noise.std().item() - x.std().item()) < 0.01
    part, pmask = corruption.apply(digits, "randX", 0.3, seed=4)
    assert torch.equal(part.train.x[~pmask], x[~pmask])
    assert not torch.isclose(part.train.x[pmask], x[pmask]).all(dim=(1, 2, 3)).any()


def test_test_split_and_real_are_untouched(digits):
    for kind in ("real", "randX", "randY"):
        new, mask = corruption.apply(digits, kind, 1.0, seed=5)
        assert new.test is digits.test
    new, mask = corruption.apply(digits, "real", 1.0, seed=5)
    assert new is digits and not mask.any()


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match=r"p=1.5 is outside \[0, 1\]"):
        corruption.apply(digits, "randY", 1.5, seed=0)
    with pytest.raises(ValueError, match="unknown corruption 'shuffle'"):
        corruption.apply(digits, "shuffle", 0.5, seed=0)


def test_shuffled_pixels_one_permutation_for_train_and_test(digits):
    new, mask = corruption.apply(digits, "shuffled_pixels", 1.0, seed=8)
    assert mask.all() and torch.equal(new.train.y, digits.train.y)
    flat_old, flat_new = digits.train.x.flatten(1), new.train.x.flatten(1)
    # Recover the permutation from one image with distinct values and check it on all others.
    # Image values are not distinct, so compare sorted pixel multisets and one mapping test.
    assert torch.equal(flat_old.sort(dim=1).values, flat_new.sort(dim=1).values)
    probe = digits.train.x.clone()
    probe[0, 0] = torch.arange(64, dtype=torch.float32).view(8, 8)
    from dataclasses import replace

    from trainables.data import Split

    probed, _ = corruption.apply(replace(digits, train=Split(probe, digits.train.y)), "shuffled_pixels", 1.0, seed=8)
    perm = probed.train.x[0, 0].flatten().long()
    assert torch.equal(flat_new, flat_old[:, perm])
    assert torch.equal(new.test.x.flatten(1), digits.test.x.flatten(1)[:, perm])  # test too
    assert not torch.equal(perm, torch.arange(64))


def test_random_pixels_a_permutation_per_image(digits):
    new, mask = corruption.apply(digits, "random_pixels", 1.0, seed=9)
    old, got = digits.train.x.flatten(1), new.train.x.flatten(1)
    assert torch.equal(old.sort(dim=1).values, got.sort(dim=1).values)  # same pixels per image
    assert not torch.equal(got, old)
    again, _ = corruption.apply(digits, "random_pixels", 1.0, seed=9)
    assert torch.equal(again.train.x, new.train.x) and torch.equal(again.test.x, new.test.x)
    assert not torch.equal(new.test.x, digits.test.x)


def test_gaussian_is_randX_at_p1(digits):
    g, gmask = corruption.apply(digits, "gaussian", 0.3, seed=10)
    r, _ = corruption.apply(digits, "randX", 1.0, seed=10)
    assert gmask.all() and torch.equal(g.train.x, r.train.x) and g.test is digits.test
