"""Per-example dynamics on hand-checkable inputs: oscillation, forgetting events, data maps."""

import numpy as np
import pandas as pd
import pytest

from analysis import dynamics as D

# 1 seed, 3 epochs, 4 examples: example 0 always right, 1 learned then forgotten,
# 2 learned at epoch 3, 3 never learned.
CORRECT = np.array([[1, 1, 0, 0],
                    [1, 0, 0, 0],
                    [1, 1, 1, 0]], dtype=bool)
P = np.array([[0.9, 0.6, 0.1, 0.1],
              [0.9, 0.2, 0.3, 0.1],
              [0.9, 0.7, 0.8, 0.1]])


def frame(seeds=1) -> pd.DataFrame:
    rows = [dict(variant="randY", split="train", seed=s, epoch=e + 1, index=i, correct=bool(CORRECT[e, i]),
                 p_label=P[e, i], label=i % 10, corrupted=i == 3)
            for s in range(seeds) for e in range(3) for i in range(4)]
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
