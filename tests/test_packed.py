"""The packed engine against K separate plain PyTorch trainings with the same init and order."""

import torch
import torch.nn.functional as F

from trainables import data as datasets
from trainables.data import Data, Split
from trainables.models import MLP, PackedMLP, mlp_param_count
from trainables.packed import auto_pack_size, infer, memory_per_seed, score, train_packed


def small_digits(n_train=300, n_test=100) -> Data:
    d = datasets.load("digits")
    return Data("digits", Split(d.train.x[:n_train], d.train.y[:n_train]),
                Split(d.test.x[:n_test], d.test.y[:n_test]), 10)


def train_plain(model: MLP, data: Data, order_seed: int, epochs: int, lr: float, momentum: float,
                batch_size: int) -> MLP:
    """The notebook way: one model, SGD on mean cross-entropy, a randperm per epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(order_seed)
    n = len(data.train)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(data.train.x[idx]), data.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_pack_matches_separate_trainings():
    torch.manual_seed(0)
    data = small_digits()
    init, order = [11, 22, 33], [44, 55, 66]
    hidden, kw = [32, 16], dict(lr=0.05, momentum=0.9, batch_size=16)  # 300/16: a partial last batch
    records = train_packed(data, hidden=hidden, init_seeds=init, order_seeds=order,
                           scored_epochs=[1, 2], splits=("train", "test"), chunk=64, **kw)
    assert [r.epoch for r in records] == [1, 2] and records[-1].step == 2 * 19
    initial = PackedMLP(64, hidden, 10, init)
    for k in range(3):
        plain = train_plain(initial.unpack(k), data, order[k], epochs=2, **kw).eval()
        for split in ("train", "test"):
            with torch.no_grad():
                logits = plain(data.split(split).x)
            expect = score(logits[None], data.split(split).y)
            got = records[-1].splits[split]
            assert torch.allclose(torch.from_numpy(got.p_label[k]), torch.from_numpy(expect.p_label[0]),
                                  atol=1e-4)
            assert (got.pred[k] == expect.pred[0]).all()
    # Training changed the models, and differently per seed.
    p = records[-1].splits["train"].p_label
    assert not (abs(p[0] - p[1]) < 1e-6).all()


def test_unpack_is_nn_linear_init():
    packed = PackedMLP(64, [8], 10, init_seeds=[5, 6])
    torch.manual_seed(0)
    ref = MLP(64, [8], 10)
    bound = 1 / 64 ** 0.5
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
    assert torch.allclose(infer(packed, x.view(20, 1, 8, 8), chunk=7), shared, atol=1e-5)


def test_scores_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # 1 model, 2 examples, 2 classes
    s = score(logits, torch.tensor([0, 0]))
    assert s.pred.tolist() == [[0, 1]] and s.correct.tolist() == [[True, False]]
    p0 = torch.softmax(torch.tensor([2.0, 0.0]), 0)[0].item()
    assert abs(s.p_label[0, 0] - p0) < 1e-6 and abs(s.loss[0, 0] + torch.log(torch.tensor(p0)).item()) < 1e-6


def test_memory_model_by_hand():
    # 4 -> 3 -> 2: 4*3+3 + 3*2+2 = 23 params; batch 5: 5 * (4 + 4*3 + 3*2) = 110 floats
    assert memory_per_seed(4, [3], 2, 5) == 4 * (3 * 23 + 110)
    assert auto_pack_size(10 * 4 * 179, 100, 4, [3], 2, 5) == 10
    assert auto_pack_size(1, 100, 4, [3], 2, 5) == 1


def test_bf16_autocast_trains_close_to_fp32():
    """precision: bf16 runs the forward passes in bfloat16 (on CPU too); parameters stay fp32."""
    data = small_digits()
    kw = dict(hidden=[64], init_seeds=[1, 2], order_seeds=[3, 4], scored_epochs=[2], lr=0.05,
              momentum=0.9, batch_size=16)
    fp32 = train_packed(data, **kw)[-1]
    bf16 = train_packed(data, autocast=torch.bfloat16, **kw)[-1]
    assert abs(fp32.acc["train"].mean() - bf16.acc["train"].mean()) < 0.05
    assert bf16.acc["train"].mean() > 0.8 and bf16.splits["test"].p_label.dtype == "float32"
    assert (fp32.splits["train"].pred != bf16.splits["train"].pred).any()  # it did change the arithmetic
