"""`sweep report`: one self-contained HTML file (plotly.js embedded, works offline) for a sweep.

Composes `analysis` (statistics and figures) with the images of the data set, which the
caller passes in (`sweep report` loads them with `trainables.data`; analysis never imports
it). A sweep that is still running or partly failed gives a report that says how many seeds each variant has.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import shlex
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import yaml

from analysis import aggregate, convergence, difficulty, dynamics, figures, kinds, load, probes, training
from analysis import memorization as memo
from analysis.render import table as _table_html

GALLERY_SIZE = 10

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h2.axis { background: #eef3fb; border: 1px solid #c5d5ee; border-left: 6px solid #0072B2; padding: 0.4rem 0.7rem;
          margin-top: 3rem; position: sticky; top: 0; z-index: 5; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.3rem 0.7rem; text-align: right; }
th { background: #f6f6f6; } td.l, th.l { text-align: left; }
.banner { padding: 0.8rem 1rem; border-radius: 6px; margin: 1rem 0; }
.warn { background: #fff4e0; border: 1px solid #f0b95a; } .ok { background: #e9f6ee; border: 1px solid #8fcca5; }
code, pre { background: #f4f4f4; border-radius: 4px; padding: 0.1rem 0.3rem; }
pre { padding: 0.8rem; overflow-x: auto; } .note { color: #555; font-size: 0.9rem; }
"""


def build(results: str, sweep: str, images: Callable[..., np.ndarray | None] | None = None) -> str:
    """The report's HTML text. `images(dataset, split, variant=None)`: the split's images for
    display, (N, H, W) or (N, H, W, 3) uint8, as the variant's models trained on them (randX: the
    noise), or None where the data set's files are not at hand (the galleries are then left out);
    the caller loads them (analysis has no data-loading code)."""
    manifest = load.load_manifest(results, sweep)
    # Every string of a stored spec reaches the page escaped (a results location may be shared);
    # the description and the YAML dump escape the original once.
    spec = _escaped(manifest["spec"])
    try:
        trials = load.load_table(results, sweep, "trials")
    except FileNotFoundError:  # launched, but no trial has finished yet
        trials = None
    # Sections in page order: HTML strings and plotly figures.
    sections: list[str | go.Figure] = [
        f"<h1>memsweep report: {html.escape(sweep)}</h1>",
        f"<p class='sub'>{html.escape(str(manifest['spec'].get('description', '')))}</p>",
        _status(manifest, trials, results, load.load_launch_state(results, sweep)),
        _provenance(manifest, trials),
    ]
    if trials is not None and len(trials):
        sections += _study_sections(results, sweep, manifest["spec"], spec, trials, images)
    sections.append(f"<h2>Spec</h2><pre>{html.escape(yaml.safe_dump(manifest['spec'], sort_keys=False))}</pre>")
    body, first = [], True
    for section in sections:
        if isinstance(section, str):
            body.append(section)
        else:  # plotly.js is embedded once, with the first figure
            body.append(section.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
            first = False
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>memsweep: {html.escape(sweep)}"
        f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def _study_sections(results: str, sweep: str, raw: dict, spec: dict, trials: pd.DataFrame, images) -> list:
    """The sections of the sweep's study family, per point of its axes, then its dynamics; `raw`:
    the stored spec, `spec`: the same, escaped for the page."""
    found = _probe_tables(results, sweep)
    unviewed = probes.unviewed(spec, found.get("probes"))
    if spec.get("engine") == "subsets":  # its models stop at their own epochs: no dynamics
        return [
            *_subset_sections(results, sweep, spec, trials, images),
            *_subset_probe_sections(spec, found, trials),
            *unviewed,
        ]
    points, sections = _axis_points(raw, trials), []
    if spec.get("engine", "packed") == "interpolate":
        epochs, norms = load.load_table(results, sweep, "epochs"), _optional(results, sweep, "norms")
        sections += _table_one(raw, trials) if len(points) > 1 else []
        for heading, where in points:
            mine = _rows_of(trials, where), _rows_of(epochs, where)
            sections += heading + _convergence_sections(spec, *mine)
            sections += _training_sections(spec, *mine, None if norms is None else _rows_of(norms, where))
            sections += _plugin_sections(spec, found, where)
    else:
        sections += _axes_section(results, sweep, raw) if len(points) > 1 else []
        for heading, where in points[:MAX_POINT_SECTIONS]:
            sections += heading + _difficulty_sections(results, sweep, spec, images, where)
            sections += _plugin_sections(spec, found, where)
        if len(points) > MAX_POINT_SECTIONS:
            sections.append(
                f"<p class='note'>P(correct) sections are drawn for the first {MAX_POINT_SECTIONS} "
                f"of the {len(points)} points; the table above has them all.</p>"
            )
    return sections + unviewed + _dynamics_sections(results, sweep, raw)


def _escaped(value: Any) -> Any:
    """`value` (plain data) with every string HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


MAX_POINT_SECTIONS = 8  # hyperparameter points that get their own P(correct) sections


def _axes_section(results: str, sweep: str, spec: dict[str, Any]) -> list:
    """Accuracy by hyperparameter point: the table, and test accuracy against the first axis."""
    names = [*(spec.get("grid") or {}), *((spec.get("sample") or {}).get("space") or {})]
    table = _in_grid_order(aggregate.accuracy_by_axes(results, sweep, names), spec.get("grid") or {})
    return [
        "<h2>Accuracy by hyperparameter</h2><p class='note'>At the last scored epoch "
        f"({int(table.epoch.max())}), mean over models and examples: training accuracy on the examples whose "
        "label or input was kept (clean) and on those corrupted (the corrupted ones are fit by memorization, "
        "Arpit et al. 2017), and test accuracy. One row per variant and point of the axes "
        f"({html.escape(', '.join(names))}).</p>",
        _table_html(table.drop(columns="epoch"), {"models": "d", **{n: "g" for n in names}}),
        figures.by_axis(table, names[0], ["train_clean", "train_corrupted", "test"], f"Accuracy against {names[0]}"),
    ]


def _value(v: Any) -> str:
    """An axis value as a heading shows it: a number to 4 significant digits (a sampled 0.0078979...)."""
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _rows_of(frame: pd.DataFrame, where: dict[str, list]) -> pd.DataFrame:
    """The rows of one hyperparameter point (a small table read whole: trials, epochs)."""
    for key, values in where.items():
        frame = frame[frame[key].isin(values)]
    return frame


def _table_one(spec: dict[str, Any], trials: pd.DataFrame) -> list:
    """Train and test accuracy per architecture, corruption and point of the axes, as Zhang et al.
    2017 print their Table 1 (`analysis.convergence.accuracy_table`)."""
    names = [*(spec.get("grid") or {}), *((spec.get("sample") or {}).get("space") or {})]
    table = _in_grid_order(convergence.accuracy_table(trials, names), spec.get("grid") or {})
    return [
        "<h2>Train and test accuracy by hyperparameter</h2><p class='note'>Each model's accuracy on the "
        "whole training and test splits where it stopped (interpolated, or at max_epochs), mean over seeds, "
        f"in percent, as Zhang et al. 2017 print Table 1. Axes: {html.escape(', '.join(names))}.</p>",
        _table_html(
            table, {"models": "d", "train %": ".1f", "test %": ".1f", "epochs": ".0f", **{n: "g" for n in names}}
        ),
    ]


def _in_grid_order(table: pd.DataFrame, grid: dict[str, list]) -> pd.DataFrame:
    """Rows in the order of the grid's values (a list-valued axis such as model.hidden is stored
    as JSON text, which would sort [16] before [4]); sampled axes by value."""

    def position(column: pd.Series) -> pd.Series:
        values = grid.get(column.name)
        if values is None:
            return column
        where = {
            (json.dumps(v) if isinstance(v, list) else float(v) if isinstance(v, (int, float)) else v): i
            for i, v in enumerate(values)
        }
        return column.astype(object).map(lambda v: where.get(v if isinstance(v, str) else float(v), len(where)))

    keys = [
        *(c for c in ("arch", "variant", "corruption") if c in table.columns),
        *(c for c in table.columns if c in grid),
    ]
    return table.sort_values(keys, key=lambda c: position(c) if c.name in grid else c).reset_index(drop=True)


def _axis_points(spec: dict[str, Any], trials: pd.DataFrame) -> list[tuple[list[str], dict[str, list]]]:
    """(heading, filter) per point of the sweep's hyperparameter axes that has stored models, in
    order (one with no heading and no filter for a sweep without axes): each point's figures stand
    alone, so that a 3-value lr grid shows three sets of curves, not one mixed set."""
    names = [*(spec.get("grid") or {}), *((spec.get("sample") or {}).get("space") or {})]
    if not names:
        return [([], {})]
    points = _in_grid_order(trials[names].drop_duplicates().sort_values(names), spec.get("grid") or {})
    points = points[names].itertuples(index=False, name=None)
    return [
        (
            [f"<h2 class='axis'>{html.escape(', '.join(f'{n} = {_value(v)}' for n, v in zip(names, point)))}</h2>"],
            {n: [v] for n, v in zip(names, point)},
        )
        for point in points
    ]


def _difficulty_sections(
    results: str, sweep: str, spec: dict[str, Any], images, where: dict[str, list] | None = None
) -> list:
    # Out of core: the examples table (21 million rows for fig1 on Fashion-MNIST) is never read whole.
    pc = aggregate.p_correct(results, sweep, filters=where)
    curves, baselines = difficulty.sorted_curves(pc)
    last = int(pc.epoch.max())
    table = difficulty.summary(pc)
    keys = pc[difficulty.KEYS].drop_duplicates().itertuples(index=False, name=None)
    bands = difficulty.bands_frame(aggregate.correct_matrices(results, sweep, list(keys), filters=where))
    intro = (
        CURVES_INTRO
        if "randX" in spec["variants"]
        else CURVES_INTRO.replace(
            "</p>",
            " This sweep has no randX variant, so there is no such line: the distance of each curve "
            "from its own binomial (the summary's <i>KS to own binomial</i>) still says whether its "
            "examples differ in difficulty.</p>",
        )
    )
    sections: list = [_summary_html(table), intro]
    sections += [
        figures.p_correct_curves(curves, baselines, split, spec["variants"], bands=bands)
        for split in ("train", "test")
        if split in set(curves.split)
    ]
    sentences = [difficulty.distance_sentence(r) for _, r in table[table.epoch == table.epoch.max()].iterrows()]
    sections.append("<ul class='note'>" + "".join(f"<li>{html.escape(t)}</li>" for t in sentences) + "</ul>")
    sections.append(
        figures.p_correct_histograms(pc, "train" if "train" in set(pc.split) else "test", last, spec["variants"])
    )
    sections.append(_galleries_intro(last))
    return sections + _galleries(pc, spec, last, images)


def _convergence_sections(spec: dict[str, Any], trials: pd.DataFrame, epochs: pd.DataFrame) -> list:
    lc = convergence.learning_curves(epochs)
    curves = [
        "<h2>Learning curves</h2><p class='note'>Mean over seeds, per epoch; full-set scores with the model fixed.</p>",
        figures.learning_curves(lc, "train_loss", "Training loss (full set)"),
        figures.learning_curves(lc, "train_acc", "Training accuracy (full set)"),
        figures.learning_curves(lc, "test_acc", "Test accuracy"),
    ]
    threshold = spec.get("threshold")
    if threshold is None or spec.get("phase2_epochs"):  # fixed-length or two-phase runs: no race to interpolate
        return curves
    table = convergence.interpolation_table(trials)
    shown = pd.DataFrame(
        {
            "arch": table.arch.astype(str),
            "corruption": table.variant.astype(str),
            "interpolated": [convergence.status_text(r) for r in table.itertuples()],
            **{
                name: table[c].astype(float)
                for name, c in (
                    ("epochs", "epochs"),
                    ("seconds", "seconds"),
                    ("steps", "steps"),
                    ("x clean (s)", "ratio_seconds"),
                    ("test error at interpolation", "test_error"),
                    ("final train acc", "final_train_acc"),
                    ("final test acc", "final_test_acc"),
                )
            },
        }
    )
    sections: list = [
        f"<h2>Time to interpolation</h2><p class='note'>A model interpolates when its full-set training "
        f"accuracy (model fixed) reaches {threshold:.1%}. Times are training seconds (scoring excluded); "
        "'x clean' is the ratio to the same architecture on clean labels. Runs that never interpolated are "
        "listed with where they stopped."
        + (
            f" Models were trained {int(trials.pack_size.max())} to a pack, and a pack's seconds run on one clock "
            "for all its models: compare epochs and steps across levels; seconds only between runs of equal "
            "pack size (<code>--set pack_size=1</code> gives each model its own)."
            if "pack_size" in trials.columns and trials.pack_size.max() > 1
            else ""
        )
        + "</p>"
        + _table_html(
            shown,
            {"epochs": ".0f", "seconds": ".1f", "steps": ".0f", "x clean (s)": ".2f"},
            bold=("test error at interpolation",),
        )
    ]
    curve = convergence.label_corruption_curve(table)
    if curve.corruption_p.nunique() > 1:
        sections += [figures.time_to_interpolation(curve), figures.generalization_error(curve)]
    return sections + curves


def _optional(results: str, sweep: str, table: str, **kw) -> pd.DataFrame | None:
    try:
        return load.load_table(results, sweep, table, **kw)
    except FileNotFoundError:
        return None


def _training_sections(
    spec: dict[str, Any], trials: pd.DataFrame, epochs: pd.DataFrame, norms: pd.DataFrame | None
) -> list:
    """Catastrophic forgetting, early stopping and weight norms of one point's rows, each when
    the sweep recorded it."""
    return [
        *_forgetting_section(spec, trials, epochs),
        *_early_stopping_section(spec, trials, epochs),
        *_norms_section(norms),
    ]


def _probe_tables(results: str, sweep: str) -> dict[str, pd.DataFrame | None]:
    """The tables the probe plug-ins write, as stored (None: not recorded)."""
    return {t: _optional(results, sweep, t) for t in dict.fromkeys(v.TABLE for v in probes.REGISTRY.values())}


def _plugin_sections(spec: dict[str, Any], found: dict[str, pd.DataFrame | None], where: dict[str, list]) -> list:
    """The section of each probe plug-in the sweep ran (`analysis.probes`), for the point `where`."""
    return probes.sections(spec, {t: None if rows is None else _rows_of(rows, where) for t, rows in found.items()})


def _subset_probe_sections(spec: dict[str, Any], found: dict, trials: pd.DataFrame) -> list:
    """Each probe's sections per cell of a subset sweep (a subset ratio, and a point of its
    axes), in the order of its ratios: seed indices repeat in every cell, so cells are never pooled."""
    ratios = list(spec.get("ratios", []))
    rank = {r: i for i, r in enumerate(ratios)}
    cells = sorted(set(trials.cell.astype(str)), key=lambda c: (rank.get(memo.ratio_of(c), len(ratios)), c))
    out = []
    for cell in cells:
        mine = _plugin_sections(spec, found, {"cell": [cell]})
        heading = [f"<h2 class='axis'>Probes of {html.escape(cell)}</h2>"] if mine and len(cells) > 1 else []
        out += heading + mine
    return out


def _forgetting_section(spec: dict[str, Any], trials: pd.DataFrame, epochs: pd.DataFrame) -> list:
    if "phase" not in epochs.columns:
        return []
    return [
        "<h2>Catastrophic forgetting</h2><p class='note'>Phase 1 trains on the training split "
        f"({', '.join(spec['corruptions'])}) plus a validation split of "
        f"{spec['validation']['size']} held-out images ({spec['validation']['corruption']}) "
        "until both are fit or the epoch budget ends; phase 2 trains on the training split alone. "
        "One line per seed.</p>",
        figures.phases(
            epochs, trials[[c for c in ("arch", "variant", "seed", "phase1_epochs") if c in trials.columns]]
        ),
        _table_html(training.phase_summary(trials, epochs), {"phase 1 epochs": ".1f"}),
    ]


def _early_stopping_section(spec: dict[str, Any], trials: pd.DataFrame, epochs: pd.DataFrame) -> list:
    if "val_acc" not in epochs.columns or not spec.get("early_stopping", {}).get("patience"):
        return []
    es = training.early_stopping_summary(trials)
    stop_mode = "stopped" if spec["early_stopping"]["stop"] else "would have stopped (recorded, training went on)"
    return [
        f"<h2>Early stopping</h2><p class='note'>Patience {spec['early_stopping']['patience']} epochs on "
        f"validation accuracy ({spec['validation']['corruption']} labels); the run {stop_mode} "
        "at the dotted line. Accuracies at the best validation epoch against the end of training, "
        "mean over seeds.</p>",
        figures.early_stopping(training.epoch_means(epochs), es),
        _table_html(es, {"best_epoch": ".1f", "early_stop_epoch": ".1f", "epochs_trained": ".0f"}),
    ]


def _norms_section(norms: pd.DataFrame | None) -> list:
    if norms is None or not len(norms):
        return []
    return [
        "<h2>Weight norms</h2><p class='note'>Frobenius norm of all parameters per epoch (mean over "
        "seeds), and of each layer at initialization and after training.</p>",
        figures.weight_norms(training.norm_curves(norms)),
        figures.layer_norms(training.layer_norms_before_after(norms)),
    ]


DYNAMICS_COLUMNS = ["variant", "seed", "epoch", "split", "index", "correct", "p_label", "label", "corrupted"]


PROTOCOL_NOTE = (
    "<p class='note'><b>Where this protocol differs from the papers.</b> memsweep scores the whole training "
    "split after each recorded epoch with the model fixed (eval mode); Toneva et al. (2019) and Swayamdipta "
    "et al. (2020) record each example's value while it is trained on, during the epoch. Toneva et al. rank "
    "never-learned examples by adding the number of presentations; here they rank above every count of "
    "forgetting events, one step per seed in which they were never learned. The forgetting histogram puts "
    "never-learned examples in the 0-events bin beside the unforgettable ones. Each model is read at its own "
    "last recorded epoch (models of an interpolate sweep stop at different epochs).</p>"
)


def _dynamics_sections(results: str, sweep: str, spec: dict[str, Any]) -> list:
    """Oscillation, forgetting events, data maps and the agreement of difficulty measures,
    when the training split was recorded at two or more epochs."""
    have = load.table_columns(results, sweep, "examples")
    # The epochs recorded, counted out of core first: most fig1 sweeps score one epoch, and their
    # training split need not be read at all.
    recorded = (
        aggregate.grouped_means(results, sweep, "examples", ["epoch"], [], filters={"split": ["train"]})
        if have
        else None
    )
    if recorded is None or len(recorded) < 2:
        return []
    # arch: interpolate sweeps only; el2n: schema 2 on.
    columns = DYNAMICS_COLUMNS + [c for c in ("el2n", "arch") if c in have]
    by_cell = bool(spec.get("grid") or spec.get("sample"))  # a cell names a hyperparameter point: one curve each
    per, osc = aggregate.stored_dynamics(results, sweep, columns + (["cell"] if by_cell else []), by_cell)
    epochs = recorded.epoch.astype(int).tolist()
    osc = dynamics.oscillation_means(osc)
    early = dynamics.first_oscillation(osc).rename(columns={"epoch": "epochs t-1, t = .., t"})
    regions = dynamics.region_shares(per)
    out = [
        f"<h2>Training dynamics per example</h2><p class='note'>From the training split recorded at epochs "
        f"{', '.join(map(str, epochs))}: accuracy oscillation between consecutive evaluations, forgetting "
        "events (correct to incorrect, Toneva et al. 2019), data maps (Swayamdipta et al. 2020) and EL2N "
        f"(Paul et al. 2021, at epoch {epochs[0]}).</p>",
        PROTOCOL_NOTE,
        figures.oscillation(osc),
        _table_html(early),
        figures.forgetting_histogram(per),
        figures.data_map(per),  # `measures` holds both readings
        "<p class='note'>Share of clean and corrupted examples in each data-map region "
        "(hard: low confidence, low variability; ambiguous: variability >= 0.2).</p>",
        _table_html(regions),
    ]
    return out + _agreement_sections(per)


def _agreement_sections(per: pd.DataFrame) -> list:
    """How far the difficulty measures agree, and where the corrupted examples land."""
    out: list = []
    agree = dynamics.agreement(per)
    if len(agree):
        wide = agree.assign(pair=agree.a + " / " + agree.b).pivot(index=kinds.keys(per), columns="pair", values="rho")
        out += [
            "<h3>Do the difficulty measures agree?</h3><p class='note'>Spearman rank correlation across "
            "examples of the hardness scores (1 - P(correct) at the last epoch, forgetting events, "
            "1 - confidence, EL2N).</p>",
            _table_html(wide.reset_index()),
        ]
    place = dynamics.corrupted_placement(per)
    if len(place):
        out += [
            "<p class='note'>Where the corrupted examples land: 'top: X' is the share of corrupted examples "
            "among the n_corrupted hardest by X (chance: n_corrupted / n).</p>",
            _table_html(place, {"n": "d", "n_corrupted": "d"}),
        ]
    return out


CURVES_INTRO = (
    "<h2>P(correct) curves</h2><p class='note'>Each curve sorts the examples by the fraction "
    "of seeds that classify them correctly. The dashed line is what the curve would be if "
    "every example were equally hard: Binomial(n = seeds, p = the randX mean)/n, as in Arpit "
    "et al. 2017 Fig. 1. Hover a curve for the example index and label.</p>"
)


def _planned(manifest: dict[str, Any]) -> dict[str, int] | None:
    """fragment -> models, from the trial plan the manifest recorded (None for older stores)."""
    plan = manifest.get("plan") or None
    if plan is None:
        return None
    return {
        f"{p['cell']}-pack{p['pack']:03d}": len(p.get("members") or ())
        or (p["seed_hi"] - p["seed_lo"]) * max(1, len(p.get("points") or ()))
        for p in plan
    }


def _status(
    manifest: dict[str, Any],
    trials: pd.DataFrame | None,
    results: str = "results",
    launch: dict[str, Any] | None = None,
) -> str:
    """The banner: complete, or what is missing and why (from the last launch's state: not known
    to have ended, or ended with trials interrupted, failed, not started) with the command that
    finishes it."""
    spec, planned = manifest["spec"], _planned(manifest)
    launch = launch if isinstance(launch, dict) else {}
    states = launch.get("trials") if isinstance(launch.get("trials"), dict) else {}
    done = set() if trials is None else set(trials.fragment)
    resume = (
        f"<code>sweep launch {html.escape(load.launch_args(manifest))} --resume --results "
        f"{html.escape(shlex.quote(str(results)))}</code>"
    )
    if not load.launch_args_known(manifest):  # stored before the manifest kept them
        resume += " (with the launch's <code>--dataset</code> and <code>--set</code> arguments)"
    if not launch.get("ended"):
        why = "Its last launch has not recorded an end: it is still running, or its driver was stopped before it could"
        finish = "finishes it"
    else:
        missing = [load.trial_state(states.get(f)) for f in (planned or {}) if f not in done]
        parts = [
            f"{missing.count(w)} trial{'' if missing.count(w) == 1 else 's'} {w}"
            for w in ("running", "interrupted", "failed", "not started")
            if w in missing
        ]
        why = "Its last launch ended with trials unfinished" + (f" ({', '.join(parts)})" if parts else "")
        finish = "runs them"
    if trials is None or trials.empty:
        then = "run <code>sweep report</code> again later" if not launch.get("ended") else f"{resume} {finish}"
        return f"<div class='banner warn'><b>No results yet.</b> No trial has finished. {why}; {then}.</div>"
    if spec.get("engine", "packed") == "packed":
        have = aggregate.seeds_by_variant(trials, spec["variants"])
        counts = ", ".join(f"{v}: {n}/{spec['seeds']} seeds" for v, n in have.items())
    else:
        counts = f"{len(trials)}/{sum(planned.values())} models" if planned else f"{len(trials)} models stored"
    counts = html.escape(counts)
    if planned is not None and any(fragment not in done for fragment in planned):
        return (
            f"<div class='banner warn'><b>Incomplete sweep</b> ({counts}). {why}; {resume} {finish}. "
            "Everything below uses what is stored so far.</div>"
        )
    return f"<div class='banner ok'>Complete: {counts}.</div>"


def _provenance(manifest: dict[str, Any], trials: pd.DataFrame | None) -> str:
    spec, prov = manifest["spec"], manifest.get("provenance", {})
    versions = dict(prov.get("versions", {}))
    if trials is not None and len(trials):
        try:
            versions.update(json.loads(trials.versions.iloc[0]))
        except (ValueError, TypeError):  # not what a trial writes: shown as stored
            versions["stored"] = trials.versions.iloc[0]
    family = {"subsets": _subset_rows, "interpolate": _convergence_rows}.get(spec.get("engine", "packed"), _fig1_rows)
    rows = family(spec) + _axis_rows(spec)
    rows += [
        ("spec hash", manifest.get("spec_hash", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))),
        ("git revision", prov.get("git_rev") or "unknown"),
    ]
    if trials is not None and len(trials):
        rows += [
            ("trained", f"{trials.started_at.min():%Y-%m-%d %H:%M} to {trials.finished_at.max():%Y-%m-%d %H:%M} UTC"),
            ("device", ", ".join(sorted(set(trials.device)))),
        ]
    rows.append(("report made", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return "<h2>Provenance</h2>" + _table_html(pd.DataFrame([(k, str(v)) for k, v in rows]), row_heads=True)


def _subset_rows(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    opt = spec["optimizer"]
    rows = [
        (
            "data set",
            spec["dataset"] + (f" (first {spec['train_size']:,} training examples)" if spec.get("train_size") else ""),
        ),
        ("subset ratios", ", ".join(f"{r:g}" for r in spec["ratios"])),
        ("models per ratio", f"{spec['seeds']:,}"),
        (
            "labels",
            f"{spec['corruption']['p']:.0%} of training labels random (randY)"
            if spec["corruption"]["p"]
            else "true labels",
        ),
        (
            "model",
            f"MLP {' x '.join(map(str, spec['model']['hidden']))} ReLU"
            if spec.get("arch", "mlp") == "mlp"
            else spec["arch"],
        ),
        ("optimizer", f"SGD lr {opt['lr']}, momentum {opt['momentum']}, batch {spec['batch_size']}"),
        (
            "stopping",
            (
                f"accuracy on its own subset >= {spec['threshold']} (checked every {spec['check_every']} epochs), or "
                if spec["threshold"]
                else ""
            )
            + f"{spec['max_epochs']} epochs",
        ),
    ]
    return rows


def _fig1_rows(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    opt = spec["optimizer"]
    rows = [
        ("data set", spec["dataset"]),
        ("variants", ", ".join(spec["variants"])),
        ("seeds", spec["seeds"]),
        ("scored epochs", ", ".join(map(str, spec["epochs"]))),
        ("model", f"MLP {' x '.join(map(str, spec['model']['hidden']))} ReLU"),
        ("optimizer", f"SGD lr {opt['lr']}, momentum {opt['momentum']}, batch {spec['batch_size']}"),
        ("corruption p", spec["corruption"]["p"]),
    ]
    return rows


def _convergence_rows(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    opt = spec["optimizer"]
    lr = (
        opt["lr"]
        if opt["lr"] is not None
        else ", ".join(f"{k} {v}" for k, v in opt["lr_by_arch"].items() if k in spec["archs"])
    )
    rows = [
        (
            "data set",
            f"{spec['dataset']} (crop {spec['preprocess']['crop'] or 'none'}, "
            f"{spec['preprocess']['normalize']} standardization)",
        ),
        ("architectures", ", ".join(spec["archs"])),
        ("corruptions", ", ".join(spec["corruptions"])),
        ("seeds", spec["seeds"]),
        (
            "optimizer",
            f"SGD lr {lr}; momentum {opt['momentum']}, decay {opt['lr_decay']} per epoch, batch {spec['batch_size']}",
        ),
        (
            "stopping",
            f"train accuracy >= {spec['threshold']}, or {spec['max_epochs']} epochs"
            + (f", or {spec['time_budget_s']} s" if spec["time_budget_s"] else ""),
        ),
    ]
    return rows


def _axis_rows(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """The hyperparameter axes: the family rows give the base values that each point's values replace."""
    rows = [(f"axis {key}", ", ".join(map(json.dumps, values))) for key, values in (spec.get("grid") or {}).items()]
    sample = spec.get("sample") or {}
    rows += [
        (
            f"axis {key}",
            f"{sample['samples']} samples, "
            + ", ".join(f"{kind} {json.dumps(given)}" for kind, given in dist.items() if given is not None),
        )
        for key, dist in (sample.get("space") or {}).items()
    ]
    return rows


SUMMARY_COLUMNS = {
    "variant": "variant",
    "split": "split",
    "epoch": "epoch",
    "n_seeds": "seeds",
    "n_examples": "examples",
    "mean": "mean P(correct)",
    "std": "std",
    "binom_std": "binomial std",
    "ks_own": "KS to own binomial",
    "p_ref": "randX mean",
    "ks_ref": "KS to randX binomial",
}


def _summary_html(table: pd.DataFrame) -> str:
    shown = table[list(SUMMARY_COLUMNS)].rename(columns=SUMMARY_COLUMNS)
    shown["variant"], shown["split"] = shown.variant.astype(str), shown.split.astype(str)
    return (
        "<h2>Summary</h2><p class='note'>KS: the Kolmogorov-Smirnov distance (0 to 1) between the "
        "examples' P(correct) values and Binomial(n = seeds, p)/n. <i>Own binomial</i> uses the curve's "
        "own mean: near 0 if every example were equally hard. <i>randX binomial</i> uses p = the randX "
        "mean, the paper's baseline.</p>" + _table_html(shown, bold=("KS to own binomial",))
    )


def _round(value: float) -> str:
    """Two decimals, never '-0.00' (an estimate of -0.001 is zero to the reader)."""
    return f"{round(float(value), 2) + 0.0:.2f}"


def _galleries_intro(epoch: int) -> str:
    return (
        f"<h2>Hardest and easiest training examples</h2><p class='note'>Per variant, after epoch {epoch}: "
        f"the {GALLERY_SIZE} examples the fewest and the most seeds classify correctly, with the label "
        "trained on (and the original where randY changed it), each image as the networks saw it "
        "(randX: Gaussian noise where it replaced the image). Ties in P(correct) are broken by the "
        "mean probability of the label.</p>"
    )


def _galleries(pc: pd.DataFrame, spec: dict[str, Any], epoch: int, images) -> list:
    """One gallery figure per variant x (hardest, easiest), or a note if the images are not here."""
    split = "train" if "train" in set(pc.split) else "test"
    picks = difficulty.extremes(pc[(pc.split == split) & (pc.epoch == epoch)], GALLERY_SIZE)
    if images is None or images(spec["dataset"], split) is None:
        return [
            f"<p class='note'>The {spec['dataset']} files are not available here "
            "(pass --data-root), so the galleries are omitted.</p>"
        ]
    out: list = []
    for variant, kind in [(v, k) for v in spec["variants"] for k in ("hardest", "easiest")]:
        rows = picks[(picks.variant == variant) & (picks.kind == kind)]
        if rows.empty:
            continue
        shown = images(spec["dataset"], split, variant)  # what this variant's networks trained on
        captions = [
            f"#{r.index} y={r.label}"
            + (f" (was {r.true_label})" if r.label != r.true_label else "")
            + f"<br>P={r.p_correct:.2f}"
            + (f", p_y={r.mean_p_label:.2f}" if "mean_p_label" in rows else "")
            for r in rows.itertuples()
        ]
        tied = int(rows.tied.iloc[-1])
        note = (
            f" ({tied} examples share P(correct) = {rows.p_correct.iloc[-1]:.2f}; shown: the "
            f"{'lowest' if kind == 'hardest' else 'highest'} mean probability of their label)"
            if tied > 1
            else ""
        )
        out.append(
            figures.gallery(shown[rows["index"].to_numpy()], captions, f"{variant}: the {len(rows)} {kind}{note}")
        )
    return out


# --- subset sweeps: memorization, influence, C-scores ----------------------------------------

NO_ESTIMATES = "No estimates yet."  # the banner of a section whose store cannot give its estimates
MEMORIZED = 0.25  # Feldman & Zhang 2020 call examples with mem above this "memorized" in their selections
TOP_PAIRS = 20


def _subset_sections(results: str, sweep: str, spec: dict[str, Any], trials: pd.DataFrame, images) -> list:
    """How well the models fit their subsets; then mem and influence (one ratio) or C-scores
    (several), or a banner saying what the store lacks for them."""
    out: list = [_fit_html(spec, trials)]
    # Read out of core: a 2,000-model sweep on 70,000 examples stores 140 million rows.
    examples, members = aggregate.StoredExamples(results, sweep), aggregate.StoredMembers(results, sweep)
    # mem(i) and influence at one ratio: the only one, or of several the nearest to Feldman &
    # Zhang's 0.7; each section stands alone, so one that lacks models never hides the other.
    ratio = min(spec["ratios"], key=lambda r: abs(r - 0.7))
    parts = []
    # With hyperparameter axes, every point is its own set of models: estimates per point.
    for heading, where in _axis_points(spec, trials):
        cells = sorted(set(_rows_of(trials, where).cell.astype(str)))
        cell = next((c for c in cells if memo.ratio_of(c) == ratio), f"ratio{ratio:g}")
        if heading:
            parts.append(("", lambda h=heading: h))
        if len(spec["ratios"]) > 1:
            parts.append(("C-scores", lambda c=cells: _cscore_sections(spec, examples, members, images, c)))
        parts.append(
            (
                "Memorization scores",
                lambda c=cell: _memorization_sections(results, sweep, spec, examples, members, images, ratio, c),
            )
        )
    for title, part in parts:
        try:
            out += part()
        except (memo.TooFewModels, memo.MembersMismatch, memo.IncompleteExamples) as exc:
            out.append(f"<h2>{title}</h2><div class='banner warn'><b>{NO_ESTIMATES}</b> {html.escape(str(exc))}</div>")
    return out


def _fit_html(spec: dict[str, Any], trials: pd.DataFrame) -> str:
    reached = int((trials.stop_reason == "interpolated").sum()) if spec.get("threshold") else len(trials)
    goal = (
        f"{reached:,} of {len(trials):,} models reached accuracy {spec['threshold']:.0%} on their own subset"
        if spec.get("threshold")
        else f"{len(trials):,} models trained {spec['max_epochs']} epochs"
    )
    warn = ""
    if spec.get("threshold") and reached < len(trials):
        warn = (
            f"<div class='banner warn'>{len(trials) - reached:,} model{'s' if len(trials) - reached > 1 else ''} "
            "stopped at max_epochs "
            f"({spec['max_epochs']}) below the threshold (lowest accuracy on own subset {trials.fit_acc.min():.3f}): they "
            "memorized less, which biases mem(i) down; raise max_epochs to fit them.</div>"
        )
    return (
        f"<h2>Models</h2><p class='note'>{goal}. Every model then scored every training and test "
        "example.</p>" + warn + _table_html(memo.fit_by_cell(trials), {"mean epochs": ".1f"})
    )


def _support_sentences(frame: pd.DataFrame) -> str:
    """What each estimate rests on (`memorization.support`): the models in and out, and the errors."""
    n = memo.support(frame)
    return (
        f"Each example's estimate rests on the models that trained on it (n_in: {n['n_in_min']}-"
        f"{n['n_in_max']}, median {n['n_in_median']:.0f}) and those that did not (n_out: "
        f"{n['n_out_min']}-{n['n_out_max']}, median {n['n_out_median']:.0f}). "
        f"Standard errors: Agresti-Caffo (largest {n['se_max']:.3f}, median {n['se_median']:.3f}); "
    )


def _memorization_sections(results, sweep, spec, examples, members, images, ratio: float, cell: str) -> list:
    mem = memo.memorization(examples, members, cell)
    others = " (of this sweep's ratios, the nearest to the paper's 0.7)" if len(spec["ratios"]) > 1 else ""
    intro = (
        f"<h2>Memorization scores</h2><p class='note'>mem(i) = P[h(x_i) = y_i | i in S] - "
        f"P[h(x_i) = y_i | i not in S] (Feldman &amp; Zhang 2020): the accuracy on training example i of "
        f"the models whose random {ratio:.0%} subset S{others} contained it, minus that of the models whose subset did "
        f"not, with y_i the label the models trained on. Near 1: the models get i right only when they "
        f"saw it (memorized); near 0: they get it right (or wrong) either way. {_support_sentences(mem)}"
        "intervals 95%.</p>"
    )
    out: list = [
        intro,
        _table_html(memo.by_label(mem, MEMORIZED), {"n": "d"}),
        figures.score_histogram(mem, "mem", "Distribution of memorization scores", "mem(i)"),
    ]
    if mem.mislabeled.any() and (~mem.mislabeled).any():
        auc = memo.auroc(mem.mem.to_numpy(), mem.mislabeled.to_numpy())
        out += [
            f"<h3>Does the score flag the mislabeled examples?</h3><p class='note'>{int(mem.mislabeled.sum()):,} "
            f"training labels differ from the true ones ({spec['corruption']['p']:.0%} were drawn at random; a "
            f"random label can equal the true one). Ranking the examples by mem(i): AUROC <b>{auc:.3f}</b> "
            "(1: every mislabeled example above every clean one; 0.5: chance).</p>",
            figures.roc(
                memo.roc_curve(mem.mem.to_numpy(), mem.mislabeled.to_numpy()),
                auc,
                "Flagging mislabeled training examples by mem(i)",
            ),
        ]
    out += _estimate_galleries(mem, "mem", "memorized", spec, images)
    out += _influence_sections(examples, members, spec, images, cell)
    out += _companion_sections(results, sweep, spec, mem)
    return out


def _estimate_galleries(frame: pd.DataFrame, column: str, word: str, spec, images) -> list:
    """The GALLERY_SIZE highest and lowest examples by `column`, with label, original label and interval."""
    shown = images(spec["dataset"], "train") if images is not None else None
    if shown is None:
        return [
            f"<p class='note'>The {spec['dataset']} files are not available here (pass "
            "--data-root), so the galleries are omitted.</p>"
        ]
    out: list = [
        f"<h3>Most and least {word} training examples</h3><p class='note'>With the label the models "
        "trained on (and the true one where it differs) and the 95% interval; ties broken by index.</p>"
    ]
    for kind, rows in (
        ("most", frame.sort_values([column, "index"], ascending=[False, True]).head(GALLERY_SIZE)),
        ("least", frame.sort_values([column, "index"]).head(GALLERY_SIZE)),
    ):
        captions = [
            f"#{r.index} y={r.label}"
            + (f" (true {r.true_label})" if r.mislabeled else "")
            + f"<br>{_round(getattr(r, column))} [{_round(r.lo)}, {_round(r.hi)}]"
            for r in rows.itertuples()
        ]
        edge = getattr(rows.iloc[-1], column)
        tied = int((frame[column] == edge).sum())
        note = (
            f" ({tied:,} examples share {_round(edge)}; shown: the lowest indices)"
            if tied > 1 and len(rows) and (rows[column] == edge).sum() < tied
            else ""
        )
        out.append(figures.gallery(shown[rows["index"].to_numpy()], captions, f"The {len(rows)} {kind} {word}{note}"))
    return out


def _influence_sections(examples, members, spec, images, cell: str) -> list:
    pairs = memo.influence(examples, members, cell, top=TOP_PAIRS)
    out: list = [
        f"<h2>Highest-influence pairs</h2><p class='note'>infl(i, j) = P[h(x_j) = y_j | i in S] - "
        "P[h(x_j) = y_j | i not in S]: how much training on example i raises the accuracy on test example "
        f"j (Feldman &amp; Zhang 2020). The {len(pairs)} highest of every (training, test) pair, computed "
        "in blocks without holding the whole matrix. Being the largest of many noisy estimates, they "
        "lean high: read each interval as that of the pair alone, not of the selection (re-estimating "
        "the chosen pairs on further models, grown with --resume, removes the bias).</p>",
        _table_html(
            pairs[
                [
                    "train_index",
                    "train_label",
                    "train_true_label",
                    "test_index",
                    "test_label",
                    "infl",
                    "se",
                    "lo",
                    "hi",
                    "n_in",
                    "n_out",
                ]
            ],
            {"train_index": "d", "test_index": "d"},
        ),
    ]
    train = images(spec["dataset"], "train") if images is not None else None
    test = images(spec["dataset"], "test") if images is not None else None
    if train is None or test is None:
        return out
    top = pairs.head(10)
    pictures = np.stack([im for r in top.itertuples() for im in (train[r.train_index], test[r.test_index])])
    captions = [
        c
        for r in top.itertuples()
        for c in (
            f"train #{r.train_index} y={r.train_label}"
            + (f" (true {r.train_true_label})" if r.train_label != r.train_true_label else ""),
            f"test #{r.test_index} y={r.test_label} infl {r.infl:.2f}",
        )
    ]
    out.append(
        figures.gallery(
            pictures, captions, f"The {len(top)} highest-influence pairs: training example (left), test example (right)"
        )
    )
    return out


def _companion_sections(results: str, sweep: str, spec: dict[str, Any], mem: pd.DataFrame) -> list:
    """mem(i) against fig1's P(correct) and against forgetting events and EL2N, from other sweeps
    in the same results location on the same training examples (`load.companions`)."""
    if spec.get("train_size"):
        return [
            f"<p class='note'>This sweep trains on the first {spec['train_size']:,} training examples "
            "(<code>train_size</code>), so its mem(i) cannot be set beside fig1's P(correct) or forgetting "
            "events of sweeps on the whole training split.</p>"
        ]
    out: list = []
    mem = mem[~mem.mislabeled]  # the other sweeps trained on the true labels
    for other, o, have in load.companions(results, sweep, spec):
        if o.get("engine", "packed") == "packed" and "real" in o.get("variants", []):
            out += _against_p_correct(results, other, mem)
        elif o.get("engine") == "interpolate" and "real" in o.get("corruptions", []) and "el2n" in have:
            out += _against_dynamics(results, other, mem, "arch" in have)
    if not out:
        out.append(
            "<p class='note'>To compare mem(i) with fig1's P(correct), or with forgetting events and "
            "EL2N, launch <code>fig1-difficulty</code> with its <code>real</code> variant (or a convergence "
            "sweep with <code>real</code> among its corruptions and <code>record_examples=true</code>) on the "
            "same data set, without <code>train_size</code> or a validation split, into the same results "
            "location.</p>"
        )
    return out


def _against_p_correct(results: str, other: str, mem: pd.DataFrame) -> list:
    found = aggregate.real_p_correct(results, other)
    if found is None:  # its real models' training split not stored (yet, or not scored)
        return []
    last, pc = found
    both, rho = memo.beside(mem, pc[["index", "p_correct"]], "p_correct")
    return [
        f"<h3>Against P(correct) of sweep {html.escape(other)}</h3><p class='note'>fig1's P(correct) "
        f"after epoch {last} (real data, {int(pc.n.max())} seeds) against mem(i), "
        f"for the {len(both):,} training examples with their true label: Spearman rho {rho:.2f}"
        f"{_rho_sentence(rho, 'examples learned late (low P(correct))')}.</p>",
        figures.score_scatter(
            both,
            "p_correct",
            "mem",
            f"P(correct), {other}",
            "mem(i)",
            f"Memorization score against P(correct) of {other}",
        ),
    ]


def _against_dynamics(results: str, other: str, mem: pd.DataFrame, has_arch: bool) -> list:
    """One comparison per architecture of the other sweep: seeds of two models are never one sequence."""
    out: list = []
    for arch, first_epoch, per in aggregate.real_dynamics(results, other, DYNAMICS_COLUMNS, has_arch):
        name = f"{other} ({arch})" if arch else other
        for column, what in (
            ("forgotten", "forgetting events (Toneva et al. 2019)"),
            ("el2n", f"EL2N at epoch {first_epoch} (Paul et al. 2021)"),
        ):
            both, rho = memo.beside(mem, per[["index", "forgotten", "el2n"]], column)
            out += [
                f"<h3>Against {what} of sweep {html.escape(name)}</h3><p class='note'>For the "
                f"{len(both):,} training examples with their true label: Spearman rho {rho:.2f} with "
                f"mem(i){_rho_sentence(-rho, 'examples hard by this measure (high values)')}.</p>",
                figures.score_scatter(
                    both, column, "mem", what, "mem(i)", f"Memorization score against {what.split(' (')[0]} of {name}"
                ),
            ]
    return out


def _rho_sentence(rho: float, hard: str) -> str:
    """How to read a rank correlation whose negative sign means 'the hard examples are the memorized ones'."""
    if pd.isna(rho) or abs(rho) < 0.1:
        return ": the two rank the examples almost independently"
    strength = "strongly" if abs(rho) >= 0.5 else "moderately" if abs(rho) >= 0.3 else "weakly"
    return (
        f": {hard} tend {strength} to be the memorized ones"
        if rho < 0
        else f": unexpectedly, {hard} tend {strength} to be the <i>less</i> memorized ones"
    )


def _cscore_sections(spec: dict[str, Any], examples, members, images, cells: list[str] | None = None) -> list:
    cs = memo.cscore(examples, members, cells)
    held = [c for c in cs.columns if c.startswith("held_out_ratio")]
    ratios = ", ".join(c.removeprefix("held_out_ratio") for c in held)
    missing = [f"{r:g}" for r in spec["ratios"] if f"held_out_ratio{r:g}" not in held]
    fewer = int((cs.ratios < len(held)).sum())
    caveat = (
        f" {'Ratio' if len(missing) == 1 else 'Ratios'} {', '.join(missing)} "
        f"{'has' if len(missing) == 1 else 'have'} no stored models yet."
        if missing
        else ""
    ) + (
        f" {fewer:,} examples were held out by no model at some ratio (a high ratio with few models): "
        "their score averages the other ratios, which leans low (held-out accuracy rises with the "
        "ratio); more models fix it."
        if fewer
        else ""
    )
    n = memo.support(cs)
    out: list = [
        f"<h2>C-scores</h2><p class='note'>The consistency score of training example i (Jiang et al. 2021): the "
        f"accuracy on i of models trained on random subsets that did <i>not</i> contain it, averaged over the "
        f"subset ratios {ratios} (the hold-out estimator). Low: the rest of the data does not predict the example's "
        f"label (atypical or mislabeled). Each example's score rests on {n['n_out_min']}-{n['n_out_max']} held-out "
        f"evaluations (median {n['n_out_median']:.0f}); standard errors (largest {n['se_max']:.3f}, median "
        f"{n['se_median']:.3f}) from the per-ratio binomial errors.{caveat}</p>",
        figures.score_histogram(cs, "cscore", "Distribution of C-scores", "C-score"),
        figures.held_out_by_ratio(
            memo.held_out_bands(cs),
            "Held-out accuracy against the subset ratio (median over examples, 10th-90th percentile band)",
        ),
    ]
    if cs.mislabeled.any() and (~cs.mislabeled).any():
        auc = memo.auroc(-cs.cscore.to_numpy(), cs.mislabeled.to_numpy())
        out += [
            f"<p class='note'>Ranking the examples by 1 - C-score flags the {int(cs.mislabeled.sum()):,} "
            f"mislabeled ones with AUROC <b>{auc:.3f}</b>.</p>",
            figures.roc(
                memo.roc_curve(-cs.cscore.to_numpy(), cs.mislabeled.to_numpy()),
                auc,
                "Flagging mislabeled training examples by 1 - C-score",
            ),
        ]
    return out + _estimate_galleries(cs, "cscore", "consistent", spec, images)
