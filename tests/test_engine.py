"""The one pack engine: a member of a K-pack ends exactly where it ends trained alone (MLP and a
CNN with batch norm; members at different corruption levels, on different subsets, one frozen at
interpolation while the others go on); plain-PyTorch equivalence; stopping rules; exact resume."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sweep import checkpoint
from trainables import budget, corruption, engine, models, packs
from trainables import data as datasets
from trainables.budget import mlp_param_count
from trainables.data import Data, Split
from trainables.models import MLP, PackedMLP

# Every test here trains or compares float computations: .ci/run runs them under a second kernel path.
pytestmark = pytest.mark.numerics


def small_digits(n_train=300, n_test=100, **kw) -> Data:
    d = datasets.load("digits", **kw)
    return Data(
        "digits", Split(d.train.x[:n_train], d.train.y[:n_train]), Split(d.test.x[:n_test], d.test.y[:n_test]), 10
    )


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", normalize="per_image")


def train_plain(
    model: MLP, data: Data, order_seed: int, epochs: int, lr: float, momentum: float, batch_size: int
) -> MLP:
    """The notebook way: one model, torch.optim.SGD on mean cross-entropy, a randperm per epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(order_seed)
    n = len(data.train)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(data.train.x[idx]), data.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_a_pack_matches_separate_plain_pytorch_trainings():
    torch.manual_seed(0)
    data = small_digits()
    init, order = [11, 22, 33], [44, 55, 66]
    kw = dict(lr=0.05, momentum=0.9, batch_size=16)  # 300/16: a partial last batch
    pack = packs.build("mlp", (1, 8, 8), 10, init, hidden=[32, 16])
    out = engine.run(
        pack,
        data,
        engine.Members(init, order),
        engine.Schedule(max_epochs=2, scored_epochs=(1, 2), keep_splits=("train", "test"), chunk=64, **kw),
    )
    assert [r.epoch for r in out.records] == [1, 2] and out.records[-1].step == 2 * 19
    initial = PackedMLP(64, [32, 16], 10, init)
    for k in range(3):
        plain = train_plain(initial.unpack(k), data, order[k], epochs=2, **kw).eval()
        for split in ("train", "test"):
            with torch.no_grad():
                expect = engine.score(plain(data.split(split).x)[None], data.split(split).y)
            got = out.records[-1].splits[split]
            np.testing.assert_allclose(got.p_label[k], expect.p_label[0], atol=1e-4)
            assert (got.pred[k] == expect.pred[0]).all()
    p = out.records[-1].splits["train"].p_label
    assert not (abs(p[0] - p[1]) < 1e-6).all()  # trained, and differently per member


def alone_and_packed(arch, data, members, schedule, **build):
    """(outcome of the K-pack, [outcome of each member trained as a pack of one])."""
    pack = packs.build(arch, data.input_shape, 10, members.init_seeds, **build)
    together = engine.run(pack, data, members, schedule)
    alone = []
    for k in range(members.k):
        one = engine.Members(
            [members.init_seeds[k]],
            [members.order_seeds[k]],
            None if members.labels is None else members.labels[k : k + 1],
            None if members.subsets is None else members.subsets[k : k + 1],
        )
        pack_one = packs.build(arch, data.input_shape, 10, one.init_seeds, **build)
        alone.append(engine.run(pack_one, data, one, schedule))
    return together, alone


def assert_member_matches(together, alone, k, atol, flips=0):
    """Member k of the pack ends where it ends alone: the same stop, epochs and losses within
    `atol`, accuracies equal or (`flips`) within that many examples of the smaller split (40),
    for engines whose kernels round differently: an example at a near-tie may flip."""
    assert together.stop_reason[k] == alone.stop_reason[0]
    assert together.reached_epoch[k] == alone.reached_epoch[0]
    mine = [r for r in together.records if r.active[k]]
    assert [r.epoch for r in mine] == [r.epoch for r in alone.records]
    for a, b in zip(mine, alone.records):
        for split in ("train", "test"):
            np.testing.assert_allclose(a.loss[split][k], b.loss[split][0], atol=atol)
            assert a.acc[split][k] == pytest.approx(b.acc[split][0], abs=flips / 40 + 1e-9)
        np.testing.assert_allclose(a.running_loss[k], b.running_loss[0], atol=atol)


def test_mlp_members_with_their_own_labels_and_subsets_end_where_they_end_alone():
    # Exact by construction: a batched matmul is K independent GEMMs of one shape, so a member's
    # numbers do not depend on the pack's size (bitwise on AVX-512, AVX2 and SSE4 kernel paths).
    data = small_digits(300)
    gen = torch.Generator().manual_seed(0)
    levels = [0.0, 0.5, 1.0]
    labels = torch.stack([corruption.apply(data, "randY", p, seed=1)[0].train.y for p in levels])
    subsets = torch.stack([torch.randperm(300, generator=gen)[:200].sort().values for _ in levels])
    members = engine.Members([1, 2, 3], [4, 5, 6], labels=labels, subsets=subsets)
    schedule = engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=40, threshold=1.0)
    together, alone = alone_and_packed("mlp", data, members, schedule, hidden=[128])
    assert together.reached_epoch[0] is not None  # the true-label member interpolated ...
    assert together.reached_epoch[0] < together.records[-1].epoch  # ... and was frozen while others went on
    for k in range(3):
        assert_member_matches(together, alone[k], k, atol=1e-4)


@pytest.mark.parametrize(
    "mode, lr, atol, threshold, flips",
    [
        # The same kernels as alone: bit for bit, through a member's freeze (member 0 interpolates at
        # epoch 4 of 6 on AMD EPYC under AVX-512, AVX2 and SSE4 kernel paths).
        ("loop", 0.05, 0.0, 1.0, 0),
        # Batched kernels round differently (losses ~2e-7 apart after 6 epochs): no interpolation
        # stop, whose epoch one flipped example can move, and an accuracy within one example.
        ("vmap", 0.01, 1e-5, None, 1),
    ],
)
def test_cnn_members_with_batch_norm_end_where_they_end_alone(mode, lr, atol, threshold, flips):
    data = small_digits(96, 40, normalize="per_image")
    labels = torch.stack([corruption.apply(data, "randY", p, seed=1)[0].train.y for p in (0.0, 1.0)])
    members = engine.Members([1, 2], [3, 4], labels=labels)
    schedule = engine.Schedule(lr=lr, momentum=0.9, batch_size=16, max_epochs=6, threshold=threshold)
    together, alone = alone_and_packed("wrn", data, members, schedule, wrn_depth=10, mode=mode)
    if mode == "loop":
        assert together.reached_epoch[0] < 6 and together.stop_reason[1] == "max_epochs"  # one froze, one went on
    for k in range(2):
        assert_member_matches(together, alone[k], k, atol=atol, flips=flips)


def test_a_frozen_member_does_not_move():
    data = small_digits(200)
    labels = torch.stack([data.train.y, corruption.apply(data, "randY", 1.0, seed=1)[0].train.y])
    members = engine.Members([1, 2], [3, 4], labels=labels)
    pack = packs.build("mlp", data.input_shape, 10, [1, 2], hidden=[128])
    seen = {}

    def watch(record, state):
        seen[record.epoch] = [t.detach().clone() for t in pack.tensors()]

    out = engine.run(
        pack,
        data,
        members,
        engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=30, threshold=1.0),
        on_epoch=watch,
    )
    stop, end = out.reached_epoch[0], out.records[-1].epoch
    assert stop is not None and stop < end  # the true-label member froze; the random-label one went on
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(seen[stop], seen[end]))  # member 1 moved on
    for a, b in zip(seen[stop], seen[end]):
        assert torch.equal(a[0], b[0])  # member 0 did not


def test_stopping_rules_lr_schedule_and_time_budget(digits):
    members = engine.Members([0], [1])

    def one(**kw):
        pack = packs.build("mlp1", digits.input_shape, 10, [0])
        return engine.run(pack, digits, members, engine.Schedule(lr=0.01, batch_size=16, momentum=0.9, **kw))

    out = one(max_epochs=100, threshold=1.0)
    last = out.records[-1]
    assert out.stop_reason == ["interpolated"] and last.acc["train"][0] == 1.0 and out.reached_epoch == [last.epoch]
    assert all(r.acc["train"][0] < 1.0 for r in out.records[:-1])
    assert out.reached_step == [last.epoch * 90]  # ceil(1437 / 16) steps an epoch
    decayed = one(max_epochs=3, lr_decay=0.5, threshold=1.0)
    assert decayed.stop_reason == ["max_epochs"] and decayed.reached_epoch == [None]
    assert [r.lr for r in decayed.records] == [0.01, 0.005, 0.0025]
    assert one(max_epochs=50, time_budget_s=1e-9).stop_reason == ["time_budget"]


def test_early_stopping_point_and_lr_schedule_by_hand():
    assert engine.early_stopping_point([0.5, 0.6, 0.6, 0.55], 2) == (2, 4)
    assert engine.early_stopping_point([0.5, 0.6, 0.7], 2) == (3, None)
    assert engine.early_stopping_point([0.5, 0.4, 0.45, 0.3], 3) == (1, 4)
    # Arpit et al.'s CNN: 0.01 halved every 15 epochs
    assert [engine.epoch_lr(0.01, e, 1.0, 15) for e in (1, 15, 16, 31)] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    assert engine.epoch_lr(0.1, 3, 0.5) == pytest.approx(0.025)


def test_two_phases_continue_one_run_and_patience_stops(digits):
    data, _ = corruption.apply(digits.carve_validation(300), "randY", 1.0, seed=0)
    members = engine.Members([0], [1])
    pack = packs.build("mlp1", data.input_shape, 10, [0])
    phase1 = engine.Schedule(
        lr=0.01, batch_size=16, momentum=0.9, max_epochs=3, threshold=1.0, fit_splits=("train", "val")
    )
    one = engine.run(pack, data, members, phase1)
    assert [r.epoch for r in one.records] == [1, 2, 3] and one.records[-1].step == 3 * 90  # (1137 + 300) / 16
    assert set(one.records[0].acc) == {"train", "test", "val"} and one.best_epoch[0] is not None
    one.state.restart()
    two = engine.run(
        pack,
        data,
        members,
        dataclasses.replace(phase1, threshold=None, max_epochs=5, fit_splits=("train",)),
        state=one.state,
    )
    assert [r.epoch for r in two.records] == [1, 2, 3, 4, 5]
    assert two.records[-1].step == 3 * 90 + 2 * 72  # phase 2: ceil(1137 / 16) steps an epoch
    stop = engine.run(
        packs.build("mlp1", data.input_shape, 10, [0]),
        data,
        members,
        dataclasses.replace(phase1, fit_splits=("train",), max_epochs=60, patience=2),
    )
    assert stop.stop_reason == ["early_stopped"] and stop.early_stop_epoch == [stop.records[-1].epoch]
    assert stop.early_stop_epoch[0] - stop.best_epoch[0] >= 2
    with pytest.raises(ValueError, match="validation split"):
        engine.run(pack, digits, members, dataclasses.replace(phase1, fit_splits=("train",), patience=2))


class Killed(Exception):
    pass


def killed_at(epoch, pack, data, members, schedule, folder) -> engine.PackState:
    """Run until `epoch`, checkpoint there as a trial does, die; the state loaded back from disk."""

    def die(record, state):
        if record.epoch == epoch:
            checkpoint.save({"pack": state()}, str(folder / "state.pt"))
            raise Killed

    with pytest.raises(Killed):
        engine.run(pack, data, members, schedule, on_epoch=die)
    return checkpoint.load(str(folder / "state.pt"))["pack"]


def test_a_killed_cnn_pack_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(digits, tmp_path):
    noisy, _ = corruption.apply(small_digits(200, 60, normalize="per_image"), "randY", 0.5, seed=3)
    members = engine.Members([7, 8], [9, 10])
    schedule = engine.Schedule(
        lr=0.01, momentum=0.9, lr_decay=0.97, batch_size=32, max_epochs=6, keep_splits=("train",)
    )
    full = engine.run(packs.build("alexnet", noisy.input_shape, 10, [7, 8]), noisy, members, schedule)

    state = killed_at(3, packs.build("alexnet", noisy.input_shape, 10, [7, 8]), noisy, members, schedule, tmp_path)
    resumed = engine.run(packs.build("alexnet", noisy.input_shape, 10, [99, 98]), noisy, members, schedule, state=state)
    assert [r.epoch for r in resumed.records] == list(range(1, 7))
    for a, b in zip(full.records, resumed.records):
        assert a.step == b.step
        np.testing.assert_array_equal(a.acc["train"], b.acc["train"])
        np.testing.assert_allclose(a.loss["test"], b.loss["test"], atol=1e-6)
        np.testing.assert_allclose(a.splits["train"].p_label, b.splits["train"].p_label, atol=1e-6)


def test_vmap_and_loop_packs_agree_and_choose_mode_keeps_bn_statistics():
    x = torch.randn(3, 8, 1, 8, 8)
    pack = packs.build("inception", (1, 8, 8), 10, [1, 2, 3])
    before = [b.clone() for b in pack.buffers_list()]
    mode = packs.choose_mode(pack, x)
    assert mode in packs.MODES and all(torch.equal(a, b) for a, b in zip(before, pack.buffers_list()))
    pack.eval()
    with torch.no_grad():
        pack.mode = "vmap"
        v = pack(x)
        pack.mode = "loop"
        loop = pack(x)
        alone = pack.member(1)(x[1])
    torch.testing.assert_close(v, loop, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(v[1], alone, atol=1e-5, rtol=1e-4)
    assert set(pack.layer_norms()) == set(models.layer_norms(pack.member(0)))
    np.testing.assert_allclose(
        pack.layer_norms()["head Linear"][0].item(), models.layer_norms(pack.member(0))["head Linear"], rtol=1e-6
    )


def test_unpack_is_nn_linear_init():
    packed = PackedMLP(64, [8], 10, init_seeds=[5, 6])
    torch.manual_seed(0)
    ref = MLP(64, [8], 10)
    bound = 1 / 64**0.5
    w = packed.weights[0]
    assert w.shape == (2, 64, 8) and w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert sum(t.numel() for t in ref.parameters()) == mlp_param_count(64, [8], 10)
    assert torch.equal(packed.unpack(1)[1].weight, w[1].T)
    assert torch.equal(PackedMLP(64, [8], 10, [6]).weights[0][0], w[1])  # seed k alone == in a pack


def test_shared_and_per_model_inputs_agree():
    packed = PackedMLP(64, [16, 16], 10, init_seeds=[1, 2, 3])
    x = torch.randn(20, 64)
    with torch.no_grad():
        shared = packed(x)
        per_model = packed(x.expand(3, 20, 64))
    assert shared.shape == (3, 20, 10)
    assert torch.allclose(shared, per_model, atol=1e-5)
    assert torch.allclose(engine.infer(packed, x.view(20, 1, 8, 8), chunk=7), shared, atol=1e-5)


def test_scores_by_hand_and_a_stable_el2n():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # 1 model, 2 examples, 2 classes
    s = engine.score(logits, torch.tensor([0, 0]))
    assert s.pred.tolist() == [[0, 1]] and s.correct.tolist() == [[True, False]]
    p0 = torch.softmax(torch.tensor([2.0, 0.0]), 0)[0].item()
    assert abs(s.p_label[0, 0] - p0) < 1e-6 and abs(s.loss[0, 0] + torch.log(torch.tensor(p0)).item()) < 1e-6
    assert s.el2n[0, 0] == pytest.approx(np.sqrt(2) * (1 - p0), rel=1e-6)
    confident = engine.score(torch.tensor([[[12.0, 0.0]]]), torch.tensor([0]))  # p_y = 1 - 6e-6
    assert confident.el2n[0, 0] == pytest.approx(np.sqrt(2) * 6.144e-6, rel=1e-3)  # not 0
    per_member = engine.score(logits.expand(2, 2, 2), torch.tensor([[0, 0], [1, 1]]))
    assert per_member.correct.tolist() == [[True, False], [False, True]]


def test_memory_model_by_hand():
    # 4 -> 3 -> 2: 4*3+3 + 3*2+2 = 23 params; batch 5: 5 * (4 + 4*3 + 3*2) = 110 floats
    assert budget.memory_per_seed(4, [3], 2, 5) == 4 * (3 * 23 + 110)
    assert budget.auto_pack_size(10 * 4 * 179, 100, 4, [3], 2, 5) == 10
    assert budget.auto_pack_size(1, 100, 4, [3], 2, 5) == 1


def test_bf16_autocast_trains_close_to_fp32():
    """precision: bf16 runs the forward passes in bfloat16 (on CPU too); parameters stay fp32."""
    data = small_digits()

    def run(autocast):
        pack = packs.build("mlp", data.input_shape, 10, [1, 2], hidden=[64])
        return engine.run(
            pack,
            data,
            engine.Members([1, 2], [3, 4]),
            engine.Schedule(
                lr=0.05,
                momentum=0.9,
                batch_size=16,
                max_epochs=2,
                scored_epochs=(2,),
                keep_splits=("train", "test"),
                autocast=autocast,
            ),
        ).records[-1]

    fp32, bf16 = run(None), run(torch.bfloat16)
    assert abs(fp32.acc["train"].mean() - bf16.acc["train"].mean()) < 0.05
    assert bf16.acc["train"].mean() > 0.8 and bf16.splits["test"].p_label.dtype == "float32"
    assert (fp32.splits["train"].pred != bf16.splits["train"].pred).any()  # it did change the arithmetic


def test_a_pack_killed_after_one_member_froze_resumes_exactly_with_batch_norm(tmp_path):
    data = small_digits(96, 40, normalize="per_image")
    labels = torch.stack([corruption.apply(data, "randY", p, seed=1)[0].train.y for p in (0.0, 1.0)])
    members = engine.Members([1, 2], [3, 4], labels=labels)
    schedule = engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=8, threshold=1.0)

    def pack():
        return packs.build("wrn", data.input_shape, 10, [1, 2], wrn_depth=10, mode="loop")

    full = engine.run(pack(), data, members, schedule)
    assert full.reached_epoch[0] is not None and full.reached_epoch[0] < 6  # frozen before the kill

    resumed = engine.run(pack(), data, members, schedule, state=killed_at(6, pack(), data, members, schedule, tmp_path))
    assert resumed.stop_reason == full.stop_reason and resumed.reached_epoch == full.reached_epoch
    for a, b in zip(full.records, resumed.records):
        np.testing.assert_array_equal(a.active, b.active)
        np.testing.assert_array_equal(a.loss["test"], b.loss["test"])  # bit for bit
    for a, b in zip(full.state.buffers, resumed.state.buffers):
        assert torch.equal(a, b)  # batch-norm statistics included


def test_cnn_members_on_their_own_subsets_end_where_they_end_alone():
    data = small_digits(120, 40, normalize="per_image")
    gen = torch.Generator().manual_seed(0)
    subsets = torch.stack([torch.randperm(120, generator=gen)[:80].sort().values for _ in range(2)])
    members = engine.Members([1, 2], [3, 4], subsets=subsets)
    schedule = engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=5, threshold=1.0)
    together, alone = alone_and_packed("wrn", data, members, schedule, wrn_depth=10, mode="loop")
    for k in range(2):
        assert_member_matches(together, alone[k], k, atol=0.0)
    assert together.records[0].step == 5  # ceil(80 / 16): each member steps through its own subset


def test_best_epoch_is_an_epoch_not_a_position(digits):
    data = digits.carve_validation(300)
    pack = packs.build("mlp1", data.input_shape, 10, [0])
    out = engine.run(
        pack,
        data,
        engine.Members([0], [1]),
        engine.Schedule(lr=0.01, batch_size=16, max_epochs=6, scored_epochs=(2, 4, 6)),
    )
    assert out.best_epoch[0] in (2, 4, 6)


def test_the_mlps_fused_step_is_torchs_sgd_and_leaves_stopped_members_alone():
    """PackedMLP.sgd_step (a written-out backward with the update fused in) against autograd and
    torch.optim.SGD on each member as a plain torch.nn MLP, for three steps."""
    from trainables.models import PackedMLP, loss_and_hits

    torch.manual_seed(0)
    pack = PackedMLP(64, [32, 16], 10, init_seeds=[1, 2, 3])
    plain = [pack.unpack(k) for k in range(3)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in plain]
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    frozen_w = pack.weights[0][1].clone()
    for step in range(3):
        x, y = torch.randn(3, 8, 64), torch.randint(0, 10, (3, 8))
        members = torch.tensor([0, 2]) if step == 2 else None  # member 1 stops before the last step
        rows = members if members is not None else torch.arange(3)
        losses, hits = loss_and_hits(pack.sgd_step(x[rows], y[rows], 0.05, 0.9, velocity, members), y[rows])
        for k in [0, 2] if step == 2 else range(3):
            logits = plain[k](x[k])
            loss = torch.nn.functional.cross_entropy(logits, y[k])
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            row = list(members).index(k) if members is not None else k
            assert losses[row].item() == pytest.approx(loss.item() * 8, rel=1e-5)
            assert hits[row].item() == (logits.argmax(1) == y[k]).sum().item()
        if step == 1:
            frozen_w = pack.weights[0][1].clone()
    for k in range(3):
        got = pack.unpack(k)
        for a, b in zip(got.parameters(), plain[k].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(pack.weights[0][1], frozen_w)  # the stopped member did not move


def test_the_mlps_step_follows_its_parameters_through_to():
    """The step works on the pack's own parameters also after `.to()` replaced them (torch's
    overwrite-on-conversion setting), not on tensors it held from before."""
    from trainables.models import PackedMLP

    pack = PackedMLP(64, [16], 10, init_seeds=[1, 2])
    old = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        pack = pack.to(torch.float64)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(old)
    before = [t.clone() for t in pack.tensors()]
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    with torch.no_grad():
        logits = pack.sgd_step(
            torch.randn(2, 8, 64, dtype=torch.float64), torch.randint(0, 10, (2, 8)), 0.1, 0.9, velocity
        )
    assert logits.dtype == torch.float64 and logits.shape == (2, 8, 10)
    assert all(not torch.equal(a, b) for a, b in zip(before, pack.tensors()))  # every layer moved


@pytest.mark.parametrize("buffer_bytes", [engine.LOGIT_BUFFER_BYTES, 3 * 16 * 10 * 4 * 2])
def test_the_mlps_running_loss_and_accuracy_are_autograds(monkeypatch, buffer_bytes):
    """The fused step's epoch loss and accuracy, taken from its logits once the buffer fills (all
    at once, or two batches at a time) over 300 examples at batch 16 (a short last batch), are
    what the autograd path counts step by step."""
    data = small_digits()
    members, schedule = (
        engine.Members([1, 2, 3], [4, 5, 6]),
        engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=2, scored_epochs=(2,)),
    )
    monkeypatch.setattr(engine, "LOGIT_BUFFER_BYTES", buffer_bytes)
    fused = engine.run(packs.build("mlp", data.input_shape, 10, [1, 2, 3], hidden=[32]), data, members, schedule)
    monkeypatch.delattr(PackedMLP, "sgd_step")  # the autograd step instead
    plain = engine.run(packs.build("mlp", data.input_shape, 10, [1, 2, 3], hidden=[32]), data, members, schedule)
    for a, b in zip(fused.records, plain.records):
        np.testing.assert_allclose(a.running_loss, b.running_loss, rtol=1e-5)
        np.testing.assert_allclose(a.running_acc, b.running_acc, atol=1.5 / 300)  # a rounding-level tie at most
        assert a.running_acc.min() > 0.2  # counted against the right labels


def test_the_mlps_step_follows_load_state_dict_with_assign():
    """After `load_state_dict(..., assign=True)` (new tensors in the pack) the step moves those."""
    pack, other = PackedMLP(64, [16], 10, init_seeds=[1]), PackedMLP(64, [16], 10, init_seeds=[2])
    loaded = {k: v.clone() for k, v in other.state_dict().items()}
    pack.load_state_dict({k: v.clone() for k, v in loaded.items()}, assign=True)
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    with torch.no_grad():
        pack.sgd_step(torch.randn(1, 8, 64), torch.randint(0, 10, (1, 8)), 0.1, 0.9, velocity)
    assert not torch.equal(pack.weights[0], loaded["weights.0"])  # the loaded tensors stepped


HYPER = {"lr": [0.05, 0.01, 0.02], "momentum": [0.9, 0.5, 0.0], "weight_decay": [0.0, 1e-3, 1e-2]}


@pytest.mark.parametrize("arch, build", [("mlp", {"hidden": [64]}), ("cnn", {"mode": "loop"})])
def test_a_member_with_its_own_hyperparameters_ends_where_it_ends_alone(arch, build):
    """A pack mixing learning rates, momenta and weight decays (the fused MLP step, and autograd
    with `engine._sgd` for the CNN): member k ends where the same model trained alone with the
    schedule's scalars set to its values ends."""
    data = small_digits(200, 60, normalize="per_image")
    members = engine.Members([1, 2, 3], [4, 5, 6], hyper=HYPER)
    schedule = engine.Schedule(lr=0.5, momentum=0.99, batch_size=16, max_epochs=3)  # overridden by `hyper`
    together = engine.run(packs.build(arch, data.input_shape, 10, members.init_seeds, **build), data, members, schedule)
    for k in range(3):
        mine = dataclasses.replace(schedule, **{name: values[k] for name, values in HYPER.items()})
        one = engine.Members([members.init_seeds[k]], [members.order_seeds[k]])
        alone = engine.run(packs.build(arch, data.input_shape, 10, one.init_seeds, **build), data, one, mine)
        assert_member_matches(together, alone, k, atol=1e-5 if arch == "mlp" else 0.0)
    lrs = together.records[-1].lr
    np.testing.assert_allclose(lrs, HYPER["lr"])  # the epoch's rate per member, as the epochs table stores it


def test_the_fused_step_with_per_member_hyperparameters_is_torchs_sgd():
    """PackedMLP.sgd_step with (K,) lr, momentum and weight decay against torch.optim.SGD with each
    member's own values (weight decay coupled as torch couples it), for three steps."""
    from trainables.models import PackedMLP

    torch.manual_seed(0)
    pack = PackedMLP(32, [16], 10, init_seeds=[1, 2, 3])
    plain = [pack.unpack(k) for k in range(3)]
    opts = [
        torch.optim.SGD(
            m.parameters(), lr=HYPER["lr"][k], momentum=HYPER["momentum"][k], weight_decay=HYPER["weight_decay"][k]
        )
        for k, m in enumerate(plain)
    ]
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    lr, mu, wd = (torch.tensor(HYPER[n]) for n in ("lr", "momentum", "weight_decay"))
    for _ in range(3):
        x, y = torch.randn(3, 8, 32), torch.randint(0, 10, (3, 8))
        pack.sgd_step(x, y, lr, mu, velocity, weight_decay=wd)
        for k in range(3):
            opts[k].zero_grad()
            torch.nn.functional.cross_entropy(plain[k](x[k]), y[k]).backward()
            opts[k].step()
    for k in range(3):
        for a, b in zip(pack.unpack(k).parameters(), plain[k].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_autograd_step_with_per_member_hyperparameters_is_torchs_sgd():
    """engine._sgd (the update of every non-fused pack) with (K,) lr, momentum and weight decay
    against torch.optim.SGD on each member's own slice, for three steps; a stopped member stays."""
    from trainables import engine

    torch.manual_seed(0)
    p = torch.randn(3, 4, 5, requires_grad=True)
    plain = [torch.nn.Parameter(p.detach()[k].clone()) for k in range(3)]
    opts = [
        torch.optim.SGD(
            [plain[k]], lr=HYPER["lr"][k], momentum=HYPER["momentum"][k], weight_decay=HYPER["weight_decay"][k]
        )
        for k in range(3)
    ]
    v = torch.zeros_like(p)
    lr, mu, wd = (torch.tensor(HYPER[n]) for n in ("lr", "momentum", "weight_decay"))
    active = torch.tensor([True, True, False])
    for _ in range(3):
        target = torch.randn(3, 4, 5)
        ((p - target) ** 2).sum().backward()
        engine._sgd([p], [v], lr, mu, active, weight_decay=wd)
        for k in range(2):
            opts[k].zero_grad()
            ((plain[k] - target[k]) ** 2).sum().backward()
            opts[k].step()
    for k in range(2):
        torch.testing.assert_close(p.detach()[k], plain[k].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p.detach()[2], plain[2].detach())  # stopped: never stepped


REGULARIZED = {
    "input_noise": [0.3, 0.0, 0.0, 0.0],
    "crop": [0, 2, 0, 0],
    "flip": [0, 0, 1, 0],
    "dropout": [0.0, 0.0, 0.3, 0.0],
    "fgsm_eps": [0.0, 0.0, 0.0, 0.05],
}


def test_a_regularized_member_ends_where_it_ends_alone():
    """Four members, each with its own regularizer (noise, crop, flip with dropout, FGSM), drawn
    from its own generator: each ends where it ends trained alone with the same strengths."""
    data = small_digits(160, 40, normalize="per_image")
    members = engine.Members([1, 2, 3, 4], [5, 6, 7, 8], hyper=REGULARIZED)
    schedule = engine.Schedule(lr=0.05, momentum=0.9, batch_size=16, max_epochs=2)
    together = engine.run(
        packs.build("mlp", data.input_shape, 10, members.init_seeds, hidden=[32]), data, members, schedule
    )
    for k in range(4):
        mine = dataclasses.replace(schedule, regularizers={name: values[k] for name, values in REGULARIZED.items()})
        one = engine.Members([members.init_seeds[k]], [members.order_seeds[k]])
        alone = engine.run(packs.build("mlp", data.input_shape, 10, one.init_seeds, hidden=[32]), data, one, mine)
        assert_member_matches(together, alone, k, atol=1e-5)
    plain = engine.run(
        packs.build("mlp", data.input_shape, 10, [1], hidden=[32]), data, engine.Members([1], [5]), schedule
    )
    assert together.records[-1].running_loss[0] != pytest.approx(plain.records[-1].running_loss[0], abs=1e-4)


def test_regularizers_by_hand():
    from trainables import regularize
    from trainables.models import PackedMLP

    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(2, 3, 16) + 1  # 2 members, 3 images of 1x4x4
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    off = {"crop": 0.0, "flip": 0.0, "input_noise": 0.0}
    assert torch.equal(regularize.inputs(x, off, gens, (1, 4, 4)), x)
    flipped = regularize.inputs(x, dict(off, flip=torch.tensor([1.0, 0.0])), gens, (1, 4, 4)).view(2, 3, 4, 4)
    images = x.view(2, 3, 4, 4)
    assert torch.equal(flipped[1], images[1])  # member 1 does not flip
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped[0], images[0]))
    cropped = regularize.inputs(x, dict(off, crop=1.0), gens, (1, 4, 4)).view(2, 3, 4, 4)
    for c, i in zip(cropped.flatten(0, 1), images.flatten(0, 1)):  # a shift by at most 1 pixel, zeros padded in
        assert any(
            torch.equal(c, torch.roll(torch.nn.functional.pad(i, (1, 1, 1, 1)), (dy, dx), (0, 1))[1:5, 1:5])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
    noisy = regularize.inputs(
        torch.zeros(2, 4000, 16), dict(off, input_noise=torch.tensor([0.5, 0.0])), gens, (1, 4, 4)
    )
    assert noisy[0].std().item() == pytest.approx(0.5, rel=0.02) and not noisy[1].any()
    masks = regularize.dropout_masks(torch.tensor([0.5, 0.0]), gens, 2, 4000, [8], torch.device("cpu"))
    assert set(masks[0][0].unique().tolist()) == {0.0, 2.0} and (masks[0][1] == 1).all()
    assert masks[0][0].mean().item() == pytest.approx(1.0, rel=0.05)
    torch.manual_seed(0)
    pack = PackedMLP(16, [8], 3, init_seeds=[1, 2])
    xb, yb = torch.randn(2, 5, 16), torch.randint(0, 3, (2, 5))
    adv = regularize.fgsm(pack, xb, yb, None, torch.tensor([0.1, 0.0]))
    assert torch.equal(adv[1], xb[1]) and torch.allclose((adv[0] - xb[0]).abs(), torch.full_like(xb[0], 0.1))
    loss = [torch.nn.functional.cross_entropy(pack(v)[0], yb[0]).item() for v in (xb, adv)]
    assert loss[1] > loss[0]  # the step climbs the member's loss
