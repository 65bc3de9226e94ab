"""Zhang et al. 2017 architectures: parameter counts on 28x28x3, and they run on digits."""

import pytest
import torch

from trainables.models import ARCHS, build, param_count


@pytest.mark.parametrize(
    "arch,expected,tolerance",
    [
        ("mlp1", 1_209_866, 0),  # the paper's counts, exactly
        ("mlp3", 1_735_178, 0),
        ("alexnet", 1_387_786, 0),
        ("inception_nobn", 1_649_402, 0),
        ("inception", 1_649_402, 0.02),  # + BN scale and shift: 1,652,826 (+0.21%)
        ("wrn", 369_498, 0),  # WideResNet-28-1
    ],
)
def test_parameter_counts_on_cifar_crops(arch, expected, tolerance):
    n = param_count(build(arch, (3, 28, 28), 10))
    assert abs(n - expected) <= tolerance * expected, n
    if arch == "inception":
        assert n == 1_652_826


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_takes_digits_as_they_are(arch):
    model = build(arch, (1, 8, 8), 10)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_wrn_depth_and_width():
    assert param_count(build("wrn", (3, 28, 28), 10, wrn_depth=16, wrn_widen=2)) > 369_498
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build("wrn", (3, 28, 28), 10, wrn_depth=27)
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build("vgg", (3, 28, 28), 10)
