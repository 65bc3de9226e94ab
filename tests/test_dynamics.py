"""Per-example dynamics on hand-checkable inputs: oscillation, forgetting events, data maps."""

import numpy as np
import pandas as pd
import pytest

from analysis import dynamics as D

# 1 seed, 3 epochs, 4 examples: example 0 always right, 1 learned then forgotten,
# 2 learned at epoch 3, 3 never learned.
CORRECT = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=bool)
P = np.array([[0.9, 0.6, 0.1, 0.1], [0.9, 0.2, 0.3, 0.1], [0.9, 0.7, 0.8, 0.1]])


def frame(seeds=1) -> pd.DataFrame:
    rows = [
        dict(
            variant="randY",
            split="train",
            seed=s,
            epoch=e + 1,
            index=i,
            correct=bool(CORRECT[e, i]),
            p_label=P[e, i],
            label=i % 10,
            corrupted=i == 3,
        )
        for s in range(seeds)
        for e in range(3)
        for i in range(4)
    ]
    return pd.DataFrame(rows)


def test_oscillation_by_hand():
    # epochs 1->2: both {0} = 1/4, either {0, 1} = 2/4; epochs 2->3: both {0}, either {0, 1, 2}
    np.testing.assert_allclose(D.oscillation_array(CORRECT), [[0.25, 0.5], [0.25, 0.75]])
    osc = D.oscillation(frame(seeds=2))
    assert osc.epoch.tolist() == [2, 3, 2, 3] and osc.union.tolist() == [0.5, 0.75, 0.5, 0.75]


def test_forgetting_by_hand():
    forgotten, never = D.forgetting_array(CORRECT)
    assert forgotten.tolist() == [0, 1, 0, 0] and never.tolist() == [False, False, False, True]
    per = D.forgetting_events(frame(seeds=2)).set_index("index")
    assert per.forgotten.tolist() == [0, 2, 0, 0]  # summed over the 2 seeds
    assert per.never_learned.tolist() == [0, 0, 0, 2]
    assert per.unforgettable.tolist() == [True, False, True, False]
    assert per.corrupted.tolist() == [False, False, False, True]


def test_data_map_by_hand():
    stats = D.data_map_arrays(P, CORRECT)
    np.testing.assert_allclose(stats[0], [0.9, 0.0, 1.0])
    np.testing.assert_allclose(stats[1], [0.5, np.std([0.6, 0.2, 0.7]), 2 / 3])
    m = D.data_map(frame(), ambiguous_variability=0.2).set_index("index")
    assert m.region.tolist() == ["easy", "ambiguous", "ambiguous", "hard"]
    assert m.loc[3, "corrupted"] and m.loc[3, "confidence"] == pytest.approx(0.1)


def test_architectures_with_the_same_variant_and_seed_are_kept_apart():
    always = frame().assign(correct=True, p_label=1.0)
    rows = pd.concat([frame().assign(arch="mlp1"), always.assign(arch="mlp3")], ignore_index=True)
    per = D.measures(rows).set_index(["arch", "index"])
    assert per.loc["mlp1"].forgotten.tolist() == [0, 1, 0, 0] and per.loc["mlp3"].forgotten.tolist() == [0] * 4
    assert per.loc["mlp1"].p_correct.tolist() == [1.0, 1.0, 1.0, 0.0] and per.loc["mlp3"].p_correct.eq(1.0).all()
    osc = D.oscillation(rows).set_index("arch")
    assert osc.loc["mlp1"].union.tolist() == [0.5, 0.75] and osc.loc["mlp3"].intersection.tolist() == [1.0, 1.0]
    assert set(D.agreement(per.reset_index()).arch) <= {"mlp1", "mlp3"}


def test_el2n_by_hand_and_measures_side_by_side():
    # Two classes: softmax (0.8, 0.2) against label 0 -> sqrt(0.2^2 + 0.2^2) = 0.2828.
    rows = pd.DataFrame(
        [
            dict(
                variant="v",
                split="train",
                seed=s,
                epoch=e,
                index=i,
                el2n=v,
                correct=c,
                p_label=p,
                label=0,
                corrupted=i == 1,
            )
            for s, e, i, v, c, p in [
                (0, 1, 0, 0.2828, True, 0.8),
                (1, 1, 0, 0.4, True, 0.7),
                (0, 1, 1, 1.2, False, 0.1),
                (1, 1, 1, 1.0, False, 0.2),
                (0, 2, 0, 0.1, True, 0.9),
                (1, 2, 0, 0.1, True, 0.9),
                (0, 2, 1, 1.3, False, 0.1),
                (1, 2, 1, 0.5, True, 0.6),
            ]
        ]
    )
    e = D.el2n(rows)
    assert e.el2n.tolist() == pytest.approx([0.3414, 1.1]) and set(e.el2n_epoch) == {1}
    with pytest.raises(ValueError, match="epoch 7"):
        D.el2n(rows, epoch=7)
    m = D.measures(rows)
    assert m.p_correct.tolist() == [1.0, 0.5]  # at the last epoch
    assert m.forgotten.tolist() == [0, 0] and m.never_learned.tolist() == [0, 1]
    assert m.confidence.tolist() == pytest.approx([0.825, 0.25])


def test_agreement_and_corrupted_placement_by_hand():
    # Five examples; the two corrupted ones are the hardest by every score but forgetting.
    m = pd.DataFrame(
        {
            "variant": "randY",
            "index": range(5),
            "p_correct": [1.0, 0.9, 0.8, 0.1, 0.0],
            "forgetting_rank": [0, 1, 0, 2, 1],
            "confidence": [0.9, 0.8, 0.7, 0.2, 0.1],
            "el2n": [0.1, 0.2, 0.3, 1.0, 1.2],
            "region": ["easy", "easy", "easy", "hard", "ambiguous"],
            "unforgettable": [True, False, True, False, False],
            "corrupted": [False, False, False, True, True],
            "label": 0,
        }
    )
    a = D.agreement(m).set_index(["a", "b"]).rho
    assert a["1 - P(correct)", "EL2N"] == pytest.approx(1.0)
    assert a["1 - P(correct)", "1 - confidence"] == pytest.approx(1.0)
    # forgetting ranks 0,1,0,2,1 (ties averaged) against 1,2,3,4,5:
    assert a["1 - P(correct)", "forgetting events"] == pytest.approx(
        pd.Series([1, 2, 3, 4, 5]).corr(pd.Series([0, 1, 0, 2, 1]), method="spearman")
    )
    p = D.corrupted_placement(m).iloc[0]
    assert p["chance"] == 0.4 and p["top: EL2N"] == 1.0 and p["top: 1 - P(correct)"] == 1.0
    # forgetting: example 3 (2 events), then one place for the tie {1, 4}, half corrupted
    assert p["top: forgetting events"] == 0.75
    assert p["hard region: corrupted"] == 0.5 and p["hard region: clean"] == 0.0
    assert p["unforgettable: corrupted"] == 0.0 and p["unforgettable: clean"] == pytest.approx(2 / 3)


def test_each_model_is_read_at_its_own_last_epoch():
    """An interpolate sweep stops each model at its own epoch: seed 1 of 'clean' stops at epoch 2,
    seed 0 goes on to 3. P(correct) takes each seed at its last epoch, and no variant vanishes."""
    rows = pd.DataFrame(
        [
            dict(variant=v, split="train", seed=s, epoch=e, index=i, correct=c, p_label=0.5, label=0, corrupted=False)
            for v, s, last, c_last in [("clean", 0, 3, True), ("clean", 1, 2, True), ("noisy", 0, 2, False)]
            for e in range(1, last + 1)
            for i in range(2)
            for c in [c_last if e == last else not c_last]
        ]
    )
    m = D.measures(rows).set_index(["variant", "index"])
    assert m.loc[("clean", 0), "p_correct"] == 1.0  # both seeds right at their own last epoch
    assert m.loc[("noisy", 0), "p_correct"] == 0.0  # not dropped for stopping before epoch 3


def test_a_missing_row_is_an_error_never_a_hit():
    rows = frame(seeds=2)
    # example 3 is never learned; drop one of its rows: before, the gap read as 'correct'
    # (a NaN cast to bool) and turned a never-learned example into a learned-then-forgotten one.
    gap = rows.drop(rows[(rows["index"] == 3) & (rows.seed == 0) & (rows.epoch == 2)].index)
    for f in (D.forgetting_events, D.data_map, D.oscillation, D.measures):
        with pytest.raises(
            ValueError, match="1 \\(epoch, example\\) rows of seed 0 .* missing, e.g. epoch 2, example 3"
        ):
            f(gap)


def test_measures_read_one_model_at_a_time_equal_those_of_the_whole_table(tmp_path):
    """`aggregate.model_rows` over a store of several fragments, folded by `measures`, gives what
    the whole table in pandas gives (the report's out-of-core path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis import aggregate

    rng = np.random.default_rng(1)
    rows = pd.concat([frame(seeds=10).assign(variant=v) for v in ("real", "randY")], ignore_index=True)
    rows["correct"] = rng.random(len(rows)) < 0.6
    rows["p_label"] = rng.random(len(rows))
    rows["el2n"] = rng.random(len(rows)).astype(np.float32)
    folder = tmp_path / "sw" / "examples"
    folder.mkdir(parents=True)
    for part, (_, one) in enumerate(rows.groupby(rows.seed // 4)):  # a fragment: four seeds of each variant
        table = pa.Table.from_pandas(one.reset_index(drop=True), preserve_index=False)
        for key in ("variant", "split"):
            table = table.set_column(table.schema.get_field_index(key), key, table[key].dictionary_encode())
        pq.write_table(table, folder / f"t{part}.parquet", row_group_size=5)
    columns = ["variant", "seed", "split", "epoch", "index", "correct", "p_label", "label", "corrupted", "el2n"]
    models = list(aggregate.model_rows(str(tmp_path), "sw", "train", columns))
    assert len(models) == 20 and all(m.seed.nunique() == 1 and m.variant.nunique() == 1 for m in models)
    whole = D.measures(rows)
    folded = D.measures(m.assign(variant=m.variant.astype(str)) for m in models)
    pd.testing.assert_frame_equal(folded, whole, check_dtype=False)


def test_oscillation_means_first_pair_and_region_shares_by_hand():
    osc = D.oscillation(frame(seeds=2))
    means = D.oscillation_means(osc)
    assert means.epoch.tolist() == [2, 3] and means.union.tolist() == [0.5, 0.75]
    first = D.first_oscillation(means)
    assert first.to_dict("records") == [dict(variant="randY", epoch=2, intersection=0.25, union=0.5)]
    per = pd.DataFrame(
        dict(variant="v", corrupted=[False, False, False, True], region=["easy", "easy", "hard", "hard"])
    )
    shares = D.region_shares(per).set_index("corrupted")
    assert shares.loc[False, "easy"] == pytest.approx(2 / 3) and shares.loc[True, ["easy", "hard"]].tolist() == [
        0.0,
        1.0,
    ]
