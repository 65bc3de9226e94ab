"""Probes on models whose answers are known by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from trainables import models, probes


def _linear(d: int = 20, seed: int = 0) -> nn.Linear:
    """Two-class linear classifier: class 1 iff w.x + b > 0 (logit 0 is pinned to 0)."""
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = torch.randn(d, generator=gen)
        lin.bias.zero_()
        lin.bias[1] = 0.3
    return lin


def _linear_case(n: int, seed: int):
    """(model, x (n, 20), each sample's L-inf distance to the boundary |w.x + b| / ||w||_1,
    r = the median distance)."""
    model = _linear()
    w, b = model.weight[1].detach(), model.bias[1].detach()
    x = torch.randn(n, 20, generator=torch.Generator().manual_seed(seed)) * 0.05
    distance = ((x @ w + b).abs() / w.abs().sum()).numpy()
    return model, x, distance, float(np.median(distance))


@pytest.mark.numerics
def test_lass_finds_exactly_the_samples_within_r_of_a_linear_boundary():
    # In the L-inf norm the distance to the boundary w.x + b = 0 is |w.x + b| / ||w||_1, and the
    # sign of the gradient is the steepest L-inf direction, so noise-free LASS with enough steps
    # crosses exactly when that distance is under r.
    model, x, distance, r = _linear_case(400, seed=1)
    keep = np.abs(distance - r) > 0.02 * r  # not on the edge of the box, where steps round
    out = probes.critical_sample_ratio(model, x, alpha=r / 50, beta=0.0, r=r, iters=100)
    assert out.critical.dtype == bool and out.critical.shape == (400,)
    np.testing.assert_array_equal(out.critical[keep], (distance < r)[keep])
    assert 0.4 < out.ratio < 0.6
    # Steps needed: about distance / alpha, never more than the cap.
    hit = out.critical & keep
    assert (out.steps[hit] <= np.ceil(distance[hit] / (r / 50)) + 1).all()
    assert (out.steps[~out.critical] == 101).all()


@pytest.mark.numerics
def test_lass_never_leaves_the_box_with_noise_and_respects_pixel_scale():
    model, x, distance, r = _linear_case(300, seed=2)
    # Noise cannot carry a sample across a boundary farther than r: never critical.
    out = probes.critical_sample_ratio(
        model, x, alpha=r / 20, beta=r / 5, r=r, iters=60, generator=torch.Generator().manual_seed(0)
    )
    assert not out.critical[distance > r * 1.001].any()
    assert out.critical[distance < r * 0.5].all()
    # pixel_scale 2: a box of r pixel units is 2r in the tensors' units.
    wide = probes.critical_sample_ratio(model, x, pixel_scale=(2.0,), alpha=r / 20, beta=0.0, r=r, iters=60)
    assert wide.critical[distance < 1.9 * r].all() and not wide.critical[distance > 2.01 * r].any()


def test_lass_runs_in_eval_mode_and_restores_training_mode():
    model = models.build("cnn", (1, 8, 8), 10)
    model.train()
    x = torch.randn(16, 1, 8, 8)
    before = model[1].running_mean.clone()
    out = probes.critical_sample_ratio(model, x, iters=3, generator=torch.Generator().manual_seed(0))
    assert model.training and torch.equal(model[1].running_mean, before)
    assert out.critical.shape == (16,)


def test_weight_noise_zero_sigma_is_the_model_and_weights_are_restored():
    torch.manual_seed(0)
    model = models.build("mlp1", (1, 8, 8), 10)
    x, y = torch.randn(200, 1, 8, 8), torch.randint(0, 10, (200,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = probes.weight_noise_accuracy(
        model, {"train": (x, y)}, [0.0, 0.5, 3.0], draws=4, generator=torch.Generator().manual_seed(0)
    )
    assert [r["sigma"] for r in rows] == [0.0] + [0.5] * 4 + [3.0] * 4
    assert rows[0]["acc"] == probes.accuracy(model, x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.numerics
def test_weight_noise_on_a_fitted_linear_model_degrades_with_sigma():
    # Class 1 iff x0 > x1, fitted exactly by w = (5, -5). Multiplicative noise tilts the
    # boundary by the ratio of the two noisy weights: tiny sigma keeps (almost) every
    # prediction, large sigma moves the boundary across many examples.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 10, generator=gen)
    y = (x[:, 0] > x[:, 1]).long()
    model = nn.Linear(10, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, :2] = torch.tensor([5.0, -5.0])
        model.bias.zero_()
    sigmas = [0.0, 0.01, 0.5, 3.0]
    rows = probes.weight_noise_accuracy(model, {"train": (x, y)}, sigmas, draws=20, generator=gen)
    mean = [np.mean([r["acc"] for r in rows if r["sigma"] == s]) for s in sigmas]
    assert mean[0] == 1.0 and mean[1] > 0.99
    assert mean[1] > mean[2] > mean[3] and mean[3] < 0.85


def test_layer_norms_by_hand():
    lin = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
        lin[0].bias.copy_(torch.tensor([0.0, 4.0]))
        lin[2].weight.fill_(1.0)
        lin[2].bias.fill_(1.0)
    assert models.layer_norms(lin) == pytest.approx({"0 Linear": 5.0, "2 Linear": 3**0.5})


@pytest.mark.numerics
def test_packed_layer_norms_match_the_unpacked_models():
    pm = models.PackedMLP(64, [32, 16], 10, init_seeds=[1, 2, 3])
    norms = pm.layer_norms()
    assert list(norms) == ["fc1", "fc2", "fc3"]
    for k in range(3):
        plain = models.layer_norms(pm.unpack(k))
        assert [norms[n][k].item() for n in norms] == pytest.approx(list(plain.values()), rel=1e-5)


def test_first_layer_filters_of_the_cnn_and_a_clear_error_for_an_mlp():
    cnn = models.build("cnn", (3, 32, 32), 10)
    f = probes.first_layer_filters(cnn)
    assert f.shape == (200, 3, 5, 5) and f.dtype == np.float32
    with torch.no_grad():
        cnn[0].weight.add_(1.0)
    assert not np.allclose(f, probes.first_layer_filters(cnn))  # a copy, not a view of the weights
    with pytest.raises(ValueError, match="no convolution"):
        probes.first_layer_filters(models.build("mlp1", (1, 8, 8), 10))
