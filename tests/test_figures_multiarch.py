"""Figures that can receive several architectures never join or stack them: each trace holds one
architecture's rows (issue: alexnet's and mlp1's norms joined into one line and stacked bars)."""

import numpy as np
import pandas as pd

import catalog
from analysis import figures, probes

ARCHS = {"mlp1": 38.8, "alexnet": 49.4}  # final total norms, as in the report that misled


def norms_frame() -> pd.DataFrame:
    rows = []
    for arch, final in ARCHS.items():
        epochs = 3 if arch == "mlp1" else 5  # each stops at its own epoch
        for variant in ("randY:0.0", "randY:1.0"):
            for seed in (0, 1):
                for epoch in range(epochs + 1):
                    total = 10 + (final - 10) * epoch / epochs
                    rows += [dict(arch=arch, variant=variant, seed=seed, epoch=epoch, layer=layer, layer_index=i,
                                  norm=total if layer == "total" else total / 2)
                             for i, layer in enumerate(["fc1", "total"])]
    return pd.DataFrame(rows)


def test_weight_norms_one_panel_per_arch_and_lines_that_never_jump_back():
    fig = figures.weight_norms(probes.norm_curves(norms_frame()))
    assert len(fig.data) == 4  # 2 archs x 2 levels
    panels = {t.xaxis for t in fig.data}
    assert len(panels) == 2
    for trace in fig.data:
        assert list(trace.x) == sorted(trace.x)  # no segment back to epoch 0
        assert max(trace.y) in (ARCHS["mlp1"], ARCHS["alexnet"])


def test_layer_norms_are_never_stacked_across_archs():
    fig = figures.layer_norms(probes.layer_norms_before_after(norms_frame()))
    after = [t for t in fig.data if "after" in t.name]
    assert len(after) == 4 and {t.xaxis for t in after} == {"x", "x2"}
    totals = {float(y) for t in after for x, y in zip(t.x, t.y) if x == "total"}
    assert totals == set(ARCHS.values())  # never 88.2 = 49.4 + 38.8


def test_csr_and_weight_noise_draw_one_line_per_arch_and_variant():
    rows = [dict(arch=a, variant=v, seed=s, probe="csr", epoch=e, value=0.1 * e + (a == "alexnet"),
                 split="train", sigma=np.nan, draw=0, n=8)
            for a in ARCHS for v in ("real", "randY:1.0") for s in (0, 1) for e in range(3)]
    fig = figures.csr(probes.csr_curve(pd.DataFrame(rows)))
    assert sorted(t.name for t in fig.data) == ["alexnet randY:1.0", "alexnet real", "mlp1 randY:1.0", "mlp1 real"]
    assert {t.line.dash for t in fig.data} == {"solid", "dash"}
    noise = [dict(arch=a, variant="real", seed=0, probe="weight_noise", epoch=5, split="train", sigma=sg, draw=d,
                  value=1 - sg, n=10) for a in ARCHS for sg in (0.0, 0.5) for d in (0, 1)]
    fig = figures.weight_noise(probes.weight_noise_curves(pd.DataFrame(noise)))
    assert sorted(t.name for t in fig.data) == ["alexnet real", "mlp1 real"]


def test_levels_take_an_ordered_palette_and_kinds_their_own_colour():
    colours = [figures._color(f"randY:{p}") for p in (0.0, 0.5, 1.0)]
    assert colours == [catalog.level_colour(p) for p in (0.0, 0.5, 1.0)] and len(set(colours)) == 3
    assert figures._color("randX") == catalog.kind_colour("randX")
    assert figures._color("randX:0.5") != figures._color("randY:0.5")


def test_legends_read_from_low_to_high_level():
    frame = norms_frame()
    frame = pd.concat([frame.assign(variant=frame.variant.replace({"randY:0.0": v})) for v in
                       ("randY:0.8", "randY:0.2")] + [frame])  # levels in dealing order, not level order
    frame["variant"] = frame.variant.astype("category")  # as the store reads it
    fig = figures.weight_norms(probes.norm_curves(frame))
    names = [t.name for t in fig.data if t.showlegend]
    assert names == ["randY:0.0", "randY:0.2", "randY:0.8", "randY:1.0"]


def test_phases_and_early_stopping_give_each_arch_its_own_panel():
    epochs = pd.DataFrame([dict(arch=a, variant="randY:1.0", seed=0, epoch=e, train_acc=0.1 * e, val_acc=0.05 * e,
                                phase=1 if e <= 3 else 2) for a in ARCHS for e in range(1, 7)])
    bounds = pd.DataFrame([dict(arch=a, variant="randY:1.0", seed=0, phase1_epochs=3) for a in ARCHS])
    fig = figures.phases(epochs, bounds)
    assert [a.text for a in fig.layout.annotations if a.text in ("mlp1 randY:1.0", "alexnet randY:1.0")] == [
        "mlp1 randY:1.0", "alexnet randY:1.0"]
    for trace in fig.data:
        assert list(trace.x) == sorted(trace.x)  # one model per line
    stops = probes.early_stopping_summary(pd.DataFrame([dict(arch=a, variant="randY:1.0", seed=0, best_epoch=2,
                                                             early_stop_epoch=4) for a in ARCHS]))
    fig = figures.early_stopping(epochs, stops)
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
