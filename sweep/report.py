"""`sweep report`: one self-contained HTML file (plotly.js embedded, works offline) for a sweep.

Composes `analysis` (statistics and figures) with the images of the data set (from
`trainables.data`, which analysis never imports). A sweep that is still running
or partly failed gives a report that says how many seeds each variant has.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import yaml

from analysis import convergence, difficulty, figures, load

EXAMPLE_COLUMNS = ["variant", "split", "epoch", "index", "correct", "label", "true_label", "corrupted"]
GALLERY_SIZE = 10

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.3rem 0.7rem; text-align: right; }
th { background: #f6f6f6; } td.l, th.l { text-align: left; }
.banner { padding: 0.8rem 1rem; border-radius: 6px; margin: 1rem 0; }
.warn { background: #fff4e0; border: 1px solid #f0b95a; } .ok { background: #e9f6ee; border: 1px solid #8fcca5; }
code, pre { background: #f4f4f4; border-radius: 4px; padding: 0.1rem 0.3rem; }
pre { padding: 0.8rem; overflow-x: auto; } .note { color: #555; font-size: 0.9rem; }
"""


def build(results: str, sweep: str, data_root: str | None = None) -> str:
    """The report's HTML text."""
    manifest = load.load_manifest(results, sweep)
    spec = manifest["spec"]
    try:
        trials = load.load_table(results, sweep, "trials")
    except FileNotFoundError:  # launched, but no trial has finished yet
        trials = None
    # Sections in page order: HTML strings and plotly figures.
    sections: list[str | go.Figure] = [
        f"<h1>memsweep report: {html.escape(sweep)}</h1>",
        f"<p class='sub'>{html.escape(spec.get('description', ''))}</p>",
        _status(spec, trials), _provenance(manifest, trials)]
    if trials is not None and len(trials):
        if spec.get("engine", "packed") == "interpolate":
            sections += _convergence_sections(results, sweep, spec, trials)
        else:
            sections += _difficulty_sections(results, sweep, spec, data_root)
    sections.append(f"<h2>Spec</h2><pre>{html.escape(yaml.safe_dump(spec, sort_keys=False))}</pre>")
    body, first = [], True
    for section in sections:
        if isinstance(section, str):
            body.append(section)
        else:  # plotly.js is embedded once, with the first figure
            body.append(section.to_html(full_html=False, include_plotlyjs=first,
                                        config={"displaylogo": False}))
            first = False
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>memsweep: {html.escape(sweep)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def _difficulty_sections(results: str, sweep: str, spec: dict[str, Any], data_root: str | None) -> list:
    examples = load.load_table(results, sweep, "examples", columns=EXAMPLE_COLUMNS)
    pc = difficulty.p_correct(examples)
    curves, baselines = difficulty.sorted_curves(pc)
    last = int(pc.epoch.max())
    sections: list = [_summary_html(difficulty.summary(pc)), CURVES_INTRO]
    sections += [figures.p_correct_curves(curves, baselines, split, spec["variants"])
                 for split in ("train", "test") if split in set(curves.split)]
    sections.append(figures.p_correct_histograms(
        pc, "train" if "train" in set(pc.split) else "test", last, spec["variants"]))
    sections.append(_galleries_intro(last))
    return sections + _galleries(pc, spec, last, data_root)


def _convergence_sections(results: str, sweep: str, spec: dict[str, Any], trials: pd.DataFrame) -> list:
    table = convergence.interpolation_table(trials)
    lc = convergence.learning_curves(load.load_table(results, sweep, "epochs"))
    threshold = spec["threshold"]
    head = ["arch", "corruption", "interpolated", "epochs", "seconds", "steps", "x clean (s)",
            "test error at interpolation", "final train acc", "final test acc"]
    def cell(v, fmt):
        return "&ndash;" if pd.isna(v) else format(v, fmt)
    rows = "".join(
        f"<tr><td class='l'>{r.arch}</td><td class='l'>{r.variant}</td>"
        f"<td class='l'>{convergence.status_text(r)}</td><td>{cell(r.epochs, '.0f')}</td>"
        f"<td>{cell(r.seconds, '.1f')}</td><td>{cell(r.steps, '.0f')}</td><td>{cell(r.ratio_seconds, '.2f')}</td>"
        f"<td><b>{cell(r.test_error, '.3f')}</b></td><td>{r.final_train_acc:.3f}</td><td>{r.final_test_acc:.3f}</td></tr>"
        for r in table.itertuples())
    sections: list = [
        f"<h2>Time to interpolation</h2><p class='note'>A model interpolates when its full-set training "
        f"accuracy (model fixed) reaches {threshold:.1%}. Times are training seconds (scoring excluded); "
        "'x clean' is the ratio to the same architecture on clean labels. Runs that never interpolated are "
        "listed with where they stopped.</p><table><tr>" + "".join(f"<th>{h}</th>" for h in head)
        + f"</tr>{rows}</table>"]
    curve = convergence.label_corruption_curve(table)
    if curve.corruption_p.nunique() > 1:
        sections += [figures.time_to_interpolation(curve), figures.generalization_error(curve)]
    sections += ["<h2>Learning curves</h2><p class='note'>Mean over seeds, per epoch; full-set scores "
                 "with the model fixed.</p>",
                 figures.learning_curves(lc, "train_loss", "Training loss (full set)"),
                 figures.learning_curves(lc, "train_acc", "Training accuracy (full set)"),
                 figures.learning_curves(lc, "test_acc", "Test accuracy")]
    return sections


CURVES_INTRO = ("<h2>P(correct) curves</h2><p class='note'>Each curve sorts the examples by the fraction "
                "of seeds that classify them correctly. The dashed line is what the curve would be if "
                "every example were equally hard: Binomial(n = seeds, p = the randX mean)/n, as in Arpit "
                "et al. 2017 Fig. 1. Hover a curve for the example index and label.</p>")


def _status(spec: dict[str, Any], trials: pd.DataFrame | None) -> str:
    from sweep.spec import expand, validate

    plans = expand(validate(spec))
    if trials is None or trials.empty:
        return ("<div class='banner warn'><b>No results yet.</b> The sweep has started but no trial "
                "has finished; run <code>sweep report</code> again later.</div>")
    done = set(trials.fragment)
    if spec.get("engine", "packed") == "packed":
        have = trials.groupby("variant", observed=True).seed.nunique().reindex(spec["variants"], fill_value=0)
        counts = ", ".join(f"{v}: {n}/{spec['seeds']} seeds" for v, n in have.items())
    else:
        counts = f"{len(trials)}/{len(plans)} models"
    if any(p.fragment not in done for p in plans):
        return (f"<div class='banner warn'><b>Incomplete sweep</b> ({counts}). It is still running or "
                f"some trials failed; <code>sweep launch {html.escape(spec['name'])} --resume</code> "
                "finishes it. Everything below uses what is stored so far.</div>")
    return f"<div class='banner ok'>Complete: {counts}.</div>"


def _provenance(manifest: dict[str, Any], trials: pd.DataFrame | None) -> str:
    spec, prov = manifest["spec"], manifest.get("provenance", {})
    versions = dict(prov.get("versions", {}))
    if trials is not None and len(trials):
        versions.update(json.loads(trials.versions.iloc[0]))
    opt = spec["optimizer"]
    if spec.get("engine", "packed") == "packed":
        rows = [("data set", spec["dataset"]), ("variants", ", ".join(spec["variants"])),
                ("seeds", spec["seeds"]), ("scored epochs", ", ".join(map(str, spec["epochs"]))),
                ("model", f"MLP {' x '.join(map(str, spec['model']['hidden']))} ReLU"),
                ("optimizer", f"SGD lr {opt['lr']}, momentum {opt['momentum']}, batch {spec['batch_size']}"),
                ("corruption p", spec["corruption"]["p"])]
    else:
        lr = opt["lr"] if opt["lr"] is not None else ", ".join(f"{k} {v}" for k, v in opt["lr_by_arch"].items()
                                                              if k in spec["archs"])
        rows = [("data set", f"{spec['dataset']} (crop {spec['preprocess']['crop'] or 'none'}, "
                             f"{spec['preprocess']['normalize']} standardization)"),
                ("architectures", ", ".join(spec["archs"])), ("corruptions", ", ".join(spec["corruptions"])),
                ("seeds", spec["seeds"]),
                ("optimizer", f"SGD lr {lr}; momentum {opt['momentum']}, decay {opt['lr_decay']} per epoch, "
                              f"batch {spec['batch_size']}"),
                ("stopping", f"train accuracy >= {spec['threshold']}, or {spec['max_epochs']} epochs"
                             + (f", or {spec['time_budget_s']} s" if spec["time_budget_s"] else ""))]
    rows += [
        ("spec hash", manifest.get("spec_hash", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))),
        ("git revision", prov.get("git_rev") or "unknown"),
    ]
    if trials is not None and len(trials):
        rows += [("trained", f"{trials.started_at.min():%Y-%m-%d %H:%M} to {trials.finished_at.max():%Y-%m-%d %H:%M} UTC"),
                 ("device", ", ".join(sorted(set(trials.device))))]
    rows.append(("report made", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    cells = "".join(f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f"<h2>Provenance</h2><table>{cells}</table>"


def _summary_html(table: pd.DataFrame) -> str:
    head = ["variant", "split", "epoch", "seeds", "examples", "mean P(correct)", "std",
            "binomial std", "KS to own binomial", "randX mean", "KS to randX binomial"]
    rows = "".join(
        "<tr>" + f"<td class='l'>{r.variant}</td><td class='l'>{r.split}</td><td>{r.epoch}</td>"
        f"<td>{r.n_seeds}</td><td>{r.n_examples}</td><td>{r.mean:.3f}</td><td>{r.std:.3f}</td>"
        f"<td>{r.binom_std:.3f}</td><td><b>{r.ks_own:.3f}</b></td><td>{r.p_ref:.3f}</td>"
        f"<td>{r.ks_ref:.3f}</td></tr>" for r in table.itertuples())
    return ("<h2>Summary</h2><p class='note'>KS: the Kolmogorov-Smirnov distance (0 to 1) between the "
            "examples' P(correct) values and Binomial(n = seeds, p)/n. <i>Own binomial</i> uses the curve's "
            "own mean: near 0 if every example were equally hard. <i>randX binomial</i> uses p = the randX "
            "mean, the paper's baseline.</p><table><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{rows}</table>")


def _galleries_intro(epoch: int) -> str:
    return (f"<h2>Hardest and easiest training examples</h2><p class='note'>Per variant, after epoch {epoch}: "
            f"the {GALLERY_SIZE} examples the fewest and the most seeds classify correctly, with the label "
            "trained on (and the original where randY changed it). randX examples are shown as the "
            "original image; the networks saw Gaussian noise in its place.</p>")


def _galleries(pc: pd.DataFrame, spec: dict[str, Any], epoch: int, data_root: str | None) -> list:
    """One gallery figure per variant x (hardest, easiest), or a note if the images are not here."""
    split = "train" if "train" in set(pc.split) else "test"
    picks = difficulty.extremes(pc[(pc.split == split) & (pc.epoch == epoch)], GALLERY_SIZE)
    images = _display_images(spec["dataset"], split, data_root)
    if images is None:
        return [f"<p class='note'>The {html.escape(spec['dataset'])} files are not available here "
                "(pass --data-root), so the galleries are omitted.</p>"]
    out: list = []
    for variant, kind in [(v, k) for v in spec["variants"] for k in ("hardest", "easiest")]:
        rows = picks[(picks.variant == variant) & (picks.kind == kind)]
        if rows.empty:
            continue
        captions = [f"#{r.index} y={r.label}" + (f" (was {r.true_label})" if r.label != r.true_label else "")
                    + f"<br>P={r.p_correct:.2f}" for r in rows.itertuples()]
        out.append(figures.gallery(images[rows["index"].to_numpy()], captions,
                                   f"{variant}: the {len(rows)} {kind}"))
    return out


def _display_images(dataset: str, split: str, data_root: str | None) -> np.ndarray | None:
    """(N, H, W) or (N, H, W, 3) uint8 for display (each image min-max scaled), or None if the
    data set's files are not here."""
    from trainables import data as datasets

    try:
        x = datasets.load(dataset, data_root, download=False).split(split).x.numpy()
    except datasets.DataUnavailable:
        return None
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    scaled = ((x - lo) / np.maximum(hi - lo, 1e-8) * 255).round().astype(np.uint8)
    scaled = scaled.transpose(0, 2, 3, 1)
    return scaled[..., 0] if scaled.shape[-1] == 1 else scaled
