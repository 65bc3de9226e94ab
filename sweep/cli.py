"""`sweep`: list presets, show a resolved spec, launch a sweep.

Bad input (unknown preset, key or value; unusable results location; missing
data; impossible resource request) ends in one line on stderr naming the value
and what is allowed, exit code 2, and nothing stored changed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import sys
from pathlib import Path

from analysis.plugins import PluginError

try:
    from sweep import planner, presets, seeding
    from sweep import spec as specs
except ImportError as _missing:  # an analyst's install: the core only, without the `train` extra
    specs, MISSING = None, _missing
except PluginError as _plugin:  # a probe plug-in that cannot be used (sweep.probes)
    specs, MISSING = None, _plugin

EXIT_USAGE = 2
SWEEP_HELP = "the sweep's name: its preset's, or what `sweep launch --name` gave it (see `sweep ls`)"
# Connecting to a cluster (--address): one attempt of ~20 s, not Ray's default 20 attempts of ~41 s
# each (~14 minutes) when the address answers but is not a Ray head.
CONNECT_ENV = {
    "RAY_NUM_REDIS_GET_RETRIES": "1",
    "RAY_gcs_rpc_server_connect_timeout_s": "5",
    "RAY_py_gcs_connect_timeout_s": "10",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's default prints usage first)
        self.exit(EXIT_USAGE, f"sweep: error: {message}\n")


def _finite(text: str) -> float:
    """A finite number (argparse type): 'nan' and 'inf' are errors, not a trial that waits forever."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", help="preset name (see `sweep list`)")
    p.add_argument(
        "--dataset",
        help="data set: "
        + ", ".join(specs.DATASET_SHAPES)
        + " (default: the preset's, cifar10 for the papers' presets; digits runs offline)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key (dotted, YAML value), e.g. --set seeds=8 --set model.hidden=[512,512]; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sweep", description="Ray Tune sweeps for memorization studies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the presets, one line each")

    show = sub.add_parser("show", help="the resolved spec of a preset, as YAML")
    _add_spec_args(show)
    show.add_argument("--name", default=None, help="the sweep's name, as `sweep launch --name` sets it")

    _add_launch_parser(sub)
    _add_store_parsers(sub)
    ls = sub.add_parser("ls", help="the sweeps in a results location: trials, rows, size, last write")
    ls.add_argument("--results", default="results", help="results location (default: ./results)")
    return parser


def _add_launch_parser(sub) -> None:
    launch = sub.add_parser("launch", help="run a preset on an embedded local Ray or a cluster")
    _add_spec_args(launch)
    launch.add_argument(
        "--name",
        default=None,
        help="the sweep's name, its folder in the results location (default: the preset's); "
        "lets one location hold several configurations of a preset",
    )
    launch.add_argument(
        "--data-root",
        default=None,
        help="folder holding (or receiving) data set files, e.g. cifar-10-batches-py "
        "(default: $MEMSWEEP_DATA or ~/.cache/memsweep/data)",
    )
    launch.add_argument(
        "--results",
        default="results",
        help="results location: a folder or a URI such as s3://bucket/prefix "
        "(default: ./results); the sweep goes in <results>/<name>/",
    )
    launch.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster ('auto' or ray://host:port); default: start and stop an embedded local Ray",
    )
    launch.add_argument(
        "--cpus-per-trial",
        type=_finite,
        default=1.0,
        metavar="N",
        help="CPUs per trial (default 1: one trial per core; a trial's torch threads follow it)",
    )
    launch.add_argument(
        "--gpus-per-trial",
        type=_finite,
        default=0.0,
        metavar="F",
        help="GPU fraction per trial, e.g. 0.25 packs four trials on a GPU",
    )
    mode = launch.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="finish the trials missing from an existing sweep with the same spec"
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="delete the existing sweep at the location and start again"
    )


def _add_store_parsers(sub) -> None:
    """status, verify and report: the commands that read a stored sweep."""
    status = sub.add_parser("status", help="per cell: seeds done, damaged, running, interrupted, failed, not started")
    status.add_argument(
        "preset",
        metavar="SWEEP",
        nargs="?",
        default=None,
        help=SWEEP_HELP + "; without it, the sweeps stored there (as `sweep ls`)",
    )
    status.add_argument("--results", default="results", help="results location (default: ./results)")

    verify = sub.add_parser("verify", help="read every stored file in full; list damaged fragments (exit 1)")
    verify.add_argument("preset", metavar="SWEEP", help=SWEEP_HELP)
    verify.add_argument("--results", default="results", help="results location (default: ./results)")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="mark damaged trials not done, so that `sweep launch ... --resume` runs them again",
    )

    report = sub.add_parser("report", help="write a self-contained HTML report of a sweep's results")
    report.add_argument("preset", metavar="SWEEP", help=SWEEP_HELP)
    report.add_argument("--results", default="results", help="results location (default: ./results)")
    report.add_argument(
        "--out",
        default=None,
        help="HTML file to write (default: <results>/<sweep>/report.html, or "
        "./<sweep>-report.html when the results are at a URI)",
    )
    report.add_argument("--data-root", default=None, help="where the data set's files are, for the galleries")


def main(argv: list[str] | None = None) -> int:
    if specs is None:
        if not isinstance(MISSING, ImportError):
            print(f"sweep: error: {MISSING}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"sweep: error: running sweeps needs the training stack ({MISSING.name} is not installed): "
            "pip install 'memsweep[train]'; reading results needs only `analysis`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if argv is None and hasattr(signal, "SIGPIPE"):  # `sweep status | head`: stop quietly, as other tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for hints that repeat it
    try:
        results = getattr(args, "results", None)
        if results and "://" not in results and Path(results).expanduser().is_file():
            raise _UserError(
                f"--results {results} is a file, not a results folder or URI (pass a folder, "
                "or leave it out for ./results)"
            )
        if args.command == "list":
            return _list()
        if args.command == "ls":
            return _ls(args)
        if args.command == "report":
            return _report(args)
        if args.command == "status":
            return _status(args)
        if args.command == "verify":
            return _verify(args)
        spec = presets.resolve(args.preset, args.dataset, _overrides(args))
        if args.command == "show":
            from sweep.launcher import describe

            print(specs.to_yaml(spec), end="")
            if spec.grid or spec.sample:  # the points the axes make, sampled values included
                from sweep.axes import labels

                names = labels(spec.points())
                print(
                    f"# {len(names)} hyperparameter points: "
                    + ", ".join(names[:20])
                    + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
                )
            slots = max(1, len(os.sched_getaffinity(0)))
            print(
                f"# {describe(planner.expand(spec, slots), spec)}; spec hash {spec.hash()} (the plan on this "
                f"machine, {slots} CPUs at 1 a trial: a launch sizes trials to its cluster)"
            )
            return 0
        return _launch(args, spec)
    except (specs.SpecError, _UserError) as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside a launch's own handling (e.g. while Ray is imported)
        print(f"sweep: error: interrupted during `sweep {args.command}`", file=sys.stderr)
        return 130


class _UserError(Exception):
    pass


def _no_sweep(args: argparse.Namespace) -> _UserError:
    """'no sweep NAME at LOCATION', naming the sweeps that are there (a typo, or --results forgotten)."""
    from analysis.load import sweeps

    try:  # names only: one listing, no manifest or footer read
        there = sweeps(args.results)
    except Exception:  # noqa: BLE001 - the listing is a hint; the error stands without it
        there = []
    hint = f"sweeps there: {', '.join(there)}" if there else "no sweeps there"
    launch = (
        f"`sweep launch {args.preset}{_at(args)}` first"
        if args.preset in presets.preset_names()
        else "`sweep ls --results DIR` lists a location's sweeps"
    )
    return _UserError(f"no sweep {args.preset!r} at {args.results} ({hint}); {launch}")


def _stored_manifest(args: argparse.Namespace) -> dict | None:
    from sweep.store import Store, StoreError

    try:
        return Store(args.results, args.preset).read_manifest()
    except (StoreError, OSError, ValueError):
        return None


def _relaunch(args: argparse.Namespace, manifest: dict | None = None) -> str:
    """`sweep launch PRESET [--name SWEEP] [--dataset D --set K=V ...]` for the stored sweep
    `args.preset` (its manifest names the preset and the arguments it was launched with; read
    here unless given)."""
    from analysis.load import launch_args

    manifest = manifest or _stored_manifest(args)
    return "sweep launch " + (launch_args(manifest) if manifest else args.preset)


def _resume(args: argparse.Namespace) -> str:
    """The command that resumes the stored sweep, quoted; for a store too old to have kept its
    launch's --dataset and --set arguments, a reminder to add them."""
    from analysis.load import launch_args_known

    manifest = _stored_manifest(args)
    known = manifest is not None and launch_args_known(manifest)
    return f"`{_relaunch(args, manifest)} --resume{_at(args)}`" + (
        "" if known else " (with the launch's --dataset and --set arguments)"
    )


def _report_command(args, spec) -> str:
    """The `sweep report` line for this sweep: --results only where it is not the default."""
    return (
        f"sweep report {spec.name}"
        + (f" --results {shlex.quote(args.results)}" if args.results != "results" else "")
        + (f" --data-root {shlex.quote(args.data_root)}" if args.data_root else "")
    )


def _overrides(args) -> list[str]:
    """The --set overrides, then --name as `name=...`; the two naming different sweeps is refused,
    as --dataset against --set dataset= is."""
    name = getattr(args, "name", None)
    if name is None:
        return list(args.overrides)
    for override in args.overrides:
        key, _, text = override.partition("=")  # a name is the text as typed (see parse_override)
        if key.strip() == "name" and text != name:
            raise specs.SpecError(f"--name {name} and --set name={text} disagree")
    return [*args.overrides, f"name={name}"]


def _spec_args(args: argparse.Namespace) -> list[str]:
    """The command line's --dataset and --set arguments, as given."""
    return [*(["--dataset", args.dataset] if args.dataset else []), *(a for o in args.overrides for a in ("--set", o))]


def _ls(args: argparse.Namespace, hint: str | None = None) -> int:
    from sweep.status import list_sweeps
    from sweep.store import StoreError

    try:
        table = list_sweeps(args.results)
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    for name, why in table.attrs.get("refused", []):
        print(f"memsweep: {name} not listed: {why}", file=sys.stderr)
    if table.empty:
        print(f"memsweep: no sweeps at {args.results}")
        return 0
    print(table.to_string(index=False))
    if hint:
        print(hint)
    return 0


def _list() -> int:
    names = presets.preset_names()
    width = max(map(len, names))
    for name in names:
        description = presets.load_preset(name).get("description", "")
        print(f"{name:<{width}}  {description}")
    return 0


def _launch(args: argparse.Namespace, spec: specs.Spec) -> int:
    if args.address is None and os.environ.get("RAY_ADDRESS"):  # ray.init() would join that cluster
        args.address = os.environ["RAY_ADDRESS"]
    if args.address is not None:  # before Ray is imported: it reads them then
        for key, value in CONNECT_ENV.items():
            os.environ.setdefault(key, value)
    from sweep import launcher
    from sweep.store import Store, StoreError
    from trainables.files import DataUnavailable, default_root, ensure_available

    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    # Everything that can be checked without Ray is checked before it starts (~5 s), and before
    # anything is written: the resource request, the data, the results location.
    launcher.check_request(args.cpus_per_trial, args.gpus_per_trial, local=args.address is None)
    if args.address is not None:
        launcher.check_address(args.address)
    named = args.data_root is not None
    if named and spec.dataset != "cifar10" and not Path(args.data_root).expanduser().is_dir():
        raise _UserError(
            f"--data-root {args.data_root}: no such folder (pass a folder that exists, or leave "
            f"it out for the default {default_root()})"
        )
    data_root = str(Path(args.data_root).expanduser()) if named else str(default_root())
    try:
        store = Store(args.results, spec.name)
        with store.lock(shlex.join(["sweep", *args.argv])):
            grow_ok = "seeds" in dict(presets.parse_override(o) for o in args.overrides)
            # First: a resume with other settings, or a plain launch into an unfinished sweep, says so.
            intact = launcher.check_mode(
                store,
                spec,
                mode,
                grow_ok=grow_ok,
                on_dataset=lambda name: presets.resolve(args.preset, name, _overrides(args)),
            )
            if intact is not None:  # the stored sweep, this spec: is anything left to run?
                plans = planner.resume_plan(store.read_manifest(), spec, grow_ok=grow_ok)
                if all(p.fragment in intact for p in plans):  # no data fetched, no trial started
                    store.drop_checkpoints(store.completed())
                    print(
                        f"memsweep: {spec.name} at {store.uri} is complete ({len(plans)}/{len(plans)} trials "
                        f"stored); nothing to {'resume' if mode == 'resume' else 'run (--overwrite starts it again)'}"
                    )
                    print(f"memsweep: report with  {_report_command(args, spec)}")
                    return 0
            ensure_available(spec.dataset, data_root, create_root=not named)  # a named folder is never created
            store.check_writable()
            return _run(args, spec, store, data_root, mode, grow_ok)
    except (DataUnavailable, StoreError) as exc:
        raise _UserError(str(exc)) from None


def _run(args: argparse.Namespace, spec: specs.Spec, store, data_root: str, mode: str, grow_ok: bool = False) -> int:
    try:
        from sweep import launcher  # imports Ray: seconds in which a Ctrl-C lands here too

        result = launcher.launch(
            spec,
            store,
            data_root=data_root,
            mode=mode,
            address=args.address,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            preset=args.preset,
            grow_ok=grow_ok,
            spec_args=_spec_args(args),
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before Tune took over (or after it ended)
        if _started(store):
            print(
                f"sweep: error: interrupted before every trial finished; `{_same_with_resume(args.argv)}` "
                "finishes the sweep",
                file=sys.stderr,
            )
        else:  # before the launch recorded anything: there is nothing to resume
            print(
                "sweep: error: interrupted before the sweep started; nothing was stored (launch it again)",
                file=sys.stderr,
            )
        return 130

    counts = {t: n for t, n in store.row_counts().items() if n}
    shown = store.uri if "://" in args.results else str(Path(args.results) / spec.name)
    print(
        f"memsweep: {result.ran - len(result.missing)}/{result.ran} trials finished "
        f"({result.skipped} already stored) in {result.wall_seconds:.1f} s"
    )
    if counts:
        # The `trials` table has a row a model (seed x cell), not a row a Ray trial: say so beside the trial count.
        print(
            f"memsweep: results in {store.uri}: "
            + ", ".join(f"{t} {n:,} rows" + (" (one a model)" if t == "trials" else "") for t, n in counts.items())
        )
        first, *rest = counts
        print(
            f'memsweep: load with  pandas.read_parquet("{shown}/{first}")'
            + (f"  (also {', '.join(rest)})" if rest else "")
        )
        print(f"memsweep: report with  {_report_command(args, spec)}")
    else:
        print(f"memsweep: nothing stored yet at {store.uri}")
    if result.missing:
        why = "the run was interrupted" if result.interrupted else "they failed (see the errors above)"
        names = ", ".join(result.missing[:5]) + (", ..." if len(result.missing) > 5 else "")
        print(
            f"sweep: error: {len(result.missing)} trials did not finish because {why}: {names}; "
            f"`{_same_with_resume(args.argv)}` finishes them",
            file=sys.stderr,
        )
        return 130 if result.interrupted else 1
    return 0


def _started(store) -> bool:
    """Whether the launch got as far as recording its sweep (its manifest) in the store."""
    try:
        return store.read_manifest() is not None
    except Exception:  # a manifest that no longer reads still means something was stored
        return True


def _same_with_resume(typed: list[str]) -> str:
    """This very command line, with --resume instead of --overwrite (the way to finish it)."""
    argv = [a for a in typed if a != "--overwrite"]
    return shlex.join(["sweep", *argv, *([] if "--resume" in argv else ["--resume"])])


def _status(args: argparse.Namespace) -> int:
    from sweep.status import STATES, status
    from sweep.store import Store, StoreError

    if args.preset is None:  # which sweeps there are, and how to ask about one
        return _ls(args, hint=f"memsweep: `sweep status SWEEP{_at(args)}` for one of them")
    try:
        store = Store(args.results, args.preset)
        table, damaged = status(store)
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    except FileNotFoundError:
        raise _no_sweep(args) from None
    print(table.to_string(index=False))
    totals = table.drop(columns="cell").sum()
    print("total: " + ", ".join(f"{totals[c]} {c}" for c in ["seeds", *STATES]))
    for fragment, why in damaged.items():
        print(f"damaged: {fragment}: {why}")
    running = store.holder()
    if running is not None:
        print(
            f"(a launch is running now: pid {running.get('pid', '?')} on {running.get('host', '?')}, started "
            f"{running.get('started', '?')}; `sweep status` again to follow it)"
        )
    elif totals["done"] < totals["seeds"]:
        print(f"(after an interrupted launch, or to repair damaged trials, {_resume(args)} runs exactly those again)")
    return 1 if damaged else 0


def _at(args: argparse.Namespace) -> str:
    """' --results X' when the results are not in the default location, for commands we suggest."""
    return "" if args.results == "results" else f" --results {shlex.quote(args.results)}"


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _verify(args: argparse.Namespace) -> int:
    from sweep.store import Store, StoreError

    try:
        store = Store(args.results, args.preset)
        manifest = store.read_manifest()
        if manifest is None:
            raise _no_sweep(args)
        # --repair changes the launch's state: never under a running launch
        with store.lock(shlex.join(["sweep", *args.argv])) if args.repair else contextlib.nullcontext():
            return _verify_locked(args, store, _planned(manifest))
    except StoreError as exc:
        raise _UserError(str(exc)) from None


def _planned(manifest: dict) -> set[str]:
    return {p.fragment for p in planner.plan_of(manifest)}


def _verify_locked(args: argparse.Namespace, store, planned: set[str]) -> int:
    done, damaged, strays = store.completed() & planned, store.damaged(full=True), store.strays(planned)
    for fragment, why in damaged.items():
        print(f"damaged: {fragment}: {why}")
    for stray in strays:
        print(f"not a fragment: {stray} (memsweep did not write it; move it out of the table folder)")
    print(
        f"memsweep: {len(done) - len(damaged)}/{len(done)} stored trials intact (every file's bytes and pages checked)"
    )
    if damaged and args.repair:
        store.forget(set(damaged))
        print(f"memsweep: {_n(len(damaged), 'damaged trial')} marked not done; {_resume(args)} runs exactly them again")
    if strays:
        print(
            f"sweep: error: {_n(len(strays), 'file')} in the table folders that memsweep did not write (e.g. "
            f"{strays[0]}); Parquet readers of the folder would read them as this sweep's data: move them out",
            file=sys.stderr,
        )
        return 1
    if damaged and args.repair:
        return 0
    if damaged:
        print(
            f"sweep: error: {len(damaged)} damaged; `sweep verify {args.preset} --repair{_at(args)}` then "
            f"{_resume(args)} runs exactly those trials again",
            file=sys.stderr,
        )
        return 1
    return 0


def _reportable(args: argparse.Namespace) -> dict:
    """The manifest of a sweep the report can read: UserError if there is none, or if a table
    folder holds a stray file or a damaged fragment."""
    from sweep.store import Store, StoreError

    try:
        store = Store(args.results, args.preset)
        manifest = store.read_manifest()
        if manifest is None:
            raise _no_sweep(args)
        store.read_launch_state()  # its shape is checked: the report shows each trial's state
        damaged, strays = store.damaged(), store.strays(_planned(manifest))
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    if strays:
        raise _UserError(
            f"{strays[0]} is not a fragment of this sweep (memsweep did not write it), and a table "
            f"folder's readers would read it as data: move it out of {strays[0].rsplit('/', 1)[0]}"
        )
    if damaged:
        first, why = next(iter(damaged.items()))
        raise _UserError(
            f"{_n(len(damaged), 'stored trial')} damaged (e.g. {first}: {why}); "
            f"{_resume(args)} runs them again, then report"
        )
    return manifest


def _report(args: argparse.Namespace) -> int:
    try:
        from analysis import report
    except PluginError as exc:  # a probe view that cannot be used (analysis.probes)
        raise _UserError(str(exc)) from None
    from analysis.dynamics import MissingRows

    out = (
        Path(args.out)
        if args.out
        else (
            Path(f"{args.preset}-report.html")
            if "://" in args.results
            else Path(args.results) / args.preset / "report.html"
        )
    )
    manifest = _reportable(args)
    import pyarrow as pa

    try:
        text = report.build(args.results, args.preset, images=_images(args.data_root, manifest))
    except FileNotFoundError as exc:
        raise _UserError(f"{exc}; run `{_relaunch(args)} --results {args.results}` first") from None
    except MissingRows as exc:
        raise _UserError(str(exc)) from None
    except (OSError, pa.ArrowException) as exc:  # damage inside a file that its footer does not show
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise _UserError(
            f"cannot read the stored results ({reason}); `sweep verify {args.preset} --repair{_at(args)}` "
            f"finds damaged trials and {_resume(args)} runs them "
            "again"
        ) from None
    try:
        _replace(out, text)
    except OSError as exc:
        raise _UserError(f"cannot write report to {out}: {exc.strerror}") from None
    size = f"{len(text) / 2**20:.1f} MiB" if len(text) >= 2**20 / 10 else f"{len(text) / 2**10:.0f} KiB"
    print(f"memsweep: report written to {out} ({size}, self-contained; open it in a browser)")
    if report.NO_ESTIMATES in text:  # a subset sweep whose store cannot give them yet: say so here too
        print(
            "memsweep: warning: the report has no estimates for some sections (too few models or a partial "
            "store); its banners say what is missing",
            file=sys.stderr,
        )
    return 0


def _replace(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a temporary file beside it, renamed over it (a rename
    replaces a symbolic link at `path` rather than writing through it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _images(data_root: str | None, manifest: dict):
    """The report's image loader: a split's images, and the training images as each variant's
    trials corrupted them (same corruption, seed rule and train_size as `sweep.job.prepare`)."""
    cache: dict = {}

    def images(dataset: str, split: str, variant: str | None = None):
        from trainables.data import display_images

        spec, corruption = specs.validate(manifest["spec"]), None
        if variant is not None and split == "train":
            c = spec.corruption_of(variant)
            if c.changes_images:
                corruption = (c.kind, c.p, seeding.derive_seed(spec.seed, "corruption", variant))
        key = (dataset, split, corruption)
        if key not in cache:
            cache[key] = display_images(
                dataset, split, data_root, corruption=corruption, train_size=getattr(spec, "train_size", None)
            )
        return cache[key]

    return images


if __name__ == "__main__":
    sys.exit(main())
