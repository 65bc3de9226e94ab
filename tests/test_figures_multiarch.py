"""Figures that can receive several architectures never join or stack them: each trace holds one
architecture's rows (issue: alexnet's and mlp1's norms joined into one line and stacked bars), and
corruption levels keep the catalog's ordered palette however many architectures there are."""

import numpy as np
import pandas as pd
import pytest

import catalog
from analysis import dynamics, figures, training
from analysis.probes import csr, weight_noise

ARCHS = {"mlp1": 38.8, "alexnet": 49.4}  # final total norms, as in the report that misled


def norms_frame() -> pd.DataFrame:
    rows = []
    for arch, final in ARCHS.items():
        epochs = 3 if arch == "mlp1" else 5  # each stops at its own epoch
        for variant in ("randY:0.0", "randY:1.0"):
            for seed in (0, 1):
                for epoch in range(epochs + 1):
                    total = 10 + (final - 10) * epoch / epochs
                    rows += [
                        dict(
                            arch=arch,
                            variant=variant,
                            seed=seed,
                            epoch=epoch,
                            layer=layer,
                            layer_index=i,
                            norm=total if layer == "total" else total / 2,
                        )
                        for i, layer in enumerate(["fc1", "total"])
                    ]
    return pd.DataFrame(rows)


def test_weight_norms_one_panel_per_arch_and_lines_that_never_jump_back():
    fig = figures.weight_norms(training.norm_curves(norms_frame()))
    assert len(fig.data) == 4  # 2 archs x 2 levels
    panels = {t.xaxis for t in fig.data}
    assert len(panels) == 2
    for trace in fig.data:
        assert list(trace.x) == sorted(trace.x)  # no segment back to epoch 0
        assert max(trace.y) in (ARCHS["mlp1"], ARCHS["alexnet"])


def test_layer_norms_are_never_stacked_across_archs():
    fig = figures.layer_norms(training.layer_norms_before_after(norms_frame()))
    after = [t for t in fig.data if "after" in t.name]
    assert len(after) == 4 and {t.xaxis for t in after} == {"x", "x2"}
    totals = {float(y) for t in after for x, y in zip(t.x, t.y) if x == "total"}
    assert totals == set(ARCHS.values())  # never 88.2 = 49.4 + 38.8


def test_csr_and_weight_noise_draw_one_line_per_arch_and_variant():
    rows = [
        dict(
            arch=a,
            variant=v,
            seed=s,
            probe="csr",
            epoch=e,
            value=0.1 * e + (a == "alexnet"),
            split="train",
            sigma=np.nan,
            draw=0,
            n=8,
        )
        for a in ARCHS
        for v in ("real", "randY:1.0")
        for s in (0, 1)
        for e in range(3)
    ]
    fig = csr.figure(csr.csr_curve(pd.DataFrame(rows)))
    assert sorted(t.name for t in fig.data) == ["alexnet randY:1.0", "alexnet real", "mlp1 randY:1.0", "mlp1 real"]
    assert {t.line.dash for t in fig.data} == {"solid", "dash"}
    noise = [
        dict(
            arch=a,
            variant="real",
            seed=0,
            probe="weight_noise",
            epoch=5,
            split="train",
            sigma=sg,
            draw=d,
            value=1 - sg,
            n=10,
        )
        for a in ARCHS
        for sg in (0.0, 0.5)
        for d in (0, 1)
    ]
    fig = weight_noise.figure(weight_noise.weight_noise_means(weight_noise.weight_noise_curves(pd.DataFrame(noise))))
    assert sorted(t.name for t in fig.data) == ["alexnet real", "mlp1 real"]


def test_levels_take_an_ordered_palette_and_kinds_their_own_colour():
    colours = [figures._color(f"randY:{p}") for p in (0.0, 0.5, 1.0)]
    assert colours == [catalog.level_colour(p) for p in (0.0, 0.5, 1.0)] and len(set(colours)) == 3
    assert figures._color("randX") == catalog.kind_colour("randX")
    assert figures._color("randX:0.5") != figures._color("randY:0.5")


def test_legends_read_from_low_to_high_level():
    frame = norms_frame()
    frame = pd.concat(
        [frame.assign(variant=frame.variant.replace({"randY:0.0": v})) for v in ("randY:0.8", "randY:0.2")] + [frame]
    )  # levels in dealing order, not level order
    frame["variant"] = frame.variant.astype("category")  # as the store reads it
    fig = figures.weight_norms(training.norm_curves(frame))
    names = [t.name for t in fig.data if t.showlegend]
    assert names == ["randY:0.0", "randY:0.2", "randY:0.8", "randY:1.0"]


def test_phases_and_early_stopping_give_each_arch_its_own_panel():
    epochs = pd.DataFrame(
        [
            dict(
                arch=a,
                variant="randY:1.0",
                seed=0,
                epoch=e,
                train_acc=0.1 * e,
                val_acc=0.05 * e,
                phase=1 if e <= 3 else 2,
            )
            for a in ARCHS
            for e in range(1, 7)
        ]
    )
    bounds = pd.DataFrame([dict(arch=a, variant="randY:1.0", seed=0, phase1_epochs=3) for a in ARCHS])
    fig = figures.phases(epochs, bounds)
    assert [a.text for a in fig.layout.annotations if a.text in ("mlp1 randY:1.0", "alexnet randY:1.0")] == [
        "mlp1 randY:1.0",
        "alexnet randY:1.0",
    ]
    for trace in fig.data:
        assert list(trace.x) == sorted(trace.x)  # one model per line
    stops = training.early_stopping_summary(
        pd.DataFrame([dict(arch=a, variant="randY:1.0", seed=0, best_epoch=2, early_stop_epoch=4) for a in ARCHS])
    )
    fig = figures.early_stopping(training.epoch_means(epochs), stops)
    assert {t.xaxis for t in fig.data} == {"x", "x2"}


# --- per-example dynamics: the architecture in its own column --------

LEVELS = ("randY:0.0", "randY:0.5")


def dynamics_examples() -> pd.DataFrame:
    """The train-split examples of a two-architecture sweep as the report hands them to the
    dynamics measures: the architecture in `arch`, the level in `variant`."""
    rng = np.random.default_rng(0)
    rows = [
        dict(
            arch=arch,
            variant=level,
            split="train",
            seed=seed,
            epoch=epoch,
            index=i,
            correct=bool(rng.random() < 0.7),
            p_label=float(rng.random()),
            label=i % 10,
            corrupted=level != "randY:0.0" and i % 2 == 1,
        )
        for arch in ARCHS
        for level in LEVELS
        for seed in (0, 1)
        for epoch in (1, 2, 3)
        for i in range(8)
    ]
    return pd.DataFrame(rows)


def _panel_titles(fig) -> dict[str, str]:
    return {a.text: a.font.color for a in fig.layout.annotations}


def _panels_by_arch(fig) -> dict[str, set[str]]:
    """The x axes (panels) that hold each architecture's traces: never one for two."""
    panels = {arch: {t.xaxis for t in fig.data if f"<b>{arch} " in t.hovertemplate} for arch in ARCHS}
    assert not panels["mlp1"] & panels["alexnet"]
    return panels


def test_oscillation_colours_each_level_and_gives_each_arch_its_own_panel():
    fig = figures.oscillation(dynamics.oscillation_means(dynamics.oscillation(dynamics_examples())))
    assert len(fig.data) == 8  # 2 archs x 2 levels x (union, intersection)
    for trace in fig.data:
        level, _, kind = trace.name.partition(": ")
        assert level in LEVELS and kind in ("union", "intersection")
        assert trace.line.color == catalog.level_colour(float(level.split(":")[1]))
        assert trace.line.dash == ("solid" if kind == "union" else "dash")
    assert sorted(map(len, _panels_by_arch(fig).values())) == [1, 1]
    assert set(ARCHS) <= set(_panel_titles(fig))
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == [f"{v}: {c}" for v in LEVELS for c in ("union", "intersection")]  # once each, low to high


def test_forgetting_histogram_colours_each_level_and_hatches_the_corrupted():
    fig = figures.forgetting_histogram(dynamics.measures(dynamics_examples()))
    assert sorted({t.name for t in fig.data}) == ["randY:0.0, clean", "randY:0.5, clean", "randY:0.5, corrupted"]
    for trace in fig.data:
        level = trace.name.split(",")[0]
        assert trace.marker.color == catalog.level_colour(float(level.split(":")[1]))
        assert trace.marker.pattern.shape == ("/" if trace.name.endswith("corrupted") else "")
    # one panel per architecture (rows) and level (columns), each holding one architecture's examples
    assert len(fig.data) == 6 and sorted(map(len, _panels_by_arch(fig).values())) == [2, 2]
    titles = _panel_titles(fig)
    assert {v: titles[v] for v in LEVELS} == {v: catalog.variant_colour(v) for v in LEVELS}
    assert set(ARCHS) <= set(titles)


def test_data_map_gives_each_arch_and_level_its_panel_titled_in_the_level_colour():
    fig = figures.data_map(dynamics.measures(dynamics_examples()))
    assert [t.name for t in fig.data if t.showlegend] == ["clean", "corrupted"]
    assert sum(bool(t.marker.showscale) for t in fig.data) == 1
    assert sorted(map(len, _panels_by_arch(fig).values())) == [2, 2]
    for arch in ARCHS:  # every example of each level, once
        assert sum(len(t.x) for t in fig.data if f"<b>{arch} " in t.hovertemplate) == 2 * 8
    titles = _panel_titles(fig)
    assert {v: titles[v] for v in LEVELS} == {v: catalog.variant_colour(v) for v in LEVELS}
    assert set(ARCHS) <= set(titles)


def test_one_architecture_keeps_one_row_and_the_level_colours():
    one = dynamics_examples()
    one = one[one.arch == "mlp1"].drop(columns="arch")
    per = dynamics.measures(one)
    for fig in (figures.forgetting_histogram(per), figures.data_map(per)):
        assert {t.yaxis for t in fig.data} <= {"y", "y2"} and not set(ARCHS) & set(_panel_titles(fig))
    fig = figures.oscillation(dynamics.oscillation_means(dynamics.oscillation(one)))
    assert {t.line.color for t in fig.data} == {catalog.level_colour(0.0), catalog.level_colour(0.5)}


def test_a_figure_of_means_refuses_per_seed_rows():
    with pytest.raises(ValueError, match=r"pass dynamics.oscillation_means\(frame\)"):
        figures.oscillation(dynamics.oscillation(dynamics_examples()))
