"""The Ray Tune launcher: a validated spec -> trials on an embedded local Ray or a cluster.

`launch` starts (or connects to) Ray, checks that the trials' resource request
can ever be met, prepares the store (fresh, resumed or overwritten), and runs one
Tune trial per cell x seed pack through `tune.with_resources`, with Tune's own
state under the results location. Only trials whose fragment is not yet in the
store run, so `--resume` finishes exactly what is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ray
from ray import tune

from analysis import plugins
from sweep import __version__, embedded
from sweep.planner import TrialPlan, expand, grow, plan_of, resume_plan
from sweep.spec import Spec, SpecError, validate
from sweep.store import Store

Mode = Literal["new", "resume", "overwrite"]


@dataclass
class LaunchResult:
    planned: int  # trials in the whole sweep
    skipped: int  # already in the store (resume)
    ran: int
    missing: list[str] = field(default_factory=list)  # fragments not in the store after the run
    interrupted: bool = False  # Tune stopped early (SIGINT / SIGTERM to the driver)
    wall_seconds: float = 0.0


def provenance() -> dict[str, Any]:
    """Versions and git revision, taken once in the driver (workers may have no git checkout)."""
    import numpy
    import pyarrow

    try:
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, text=True, capture_output=True, timeout=5
        )
        rev = git.stdout.strip() if git.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {
        "versions": {
            "memsweep": __version__,
            "ray": ray.__version__,
            "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__,
        },
        "git_rev": rev,
    }


def check_mode(store: Store, spec: Spec, mode: Mode, on_dataset=None, grow_ok: bool = False) -> set[str] | None:
    """Refuse to mix two specs in one location: an existing sweep needs --resume (same spec)
    or --overwrite, unless it is complete with the same spec (nothing to run). Raises SpecError;
    changes nothing. `on_dataset(name)`: the user's spec resolved on another data set (so that a
    resume hint names the data set, not its defaults). Returns the stored sweep's intact
    fragments when it holds this spec (read once here, for the caller to tell what is left), else
    None (nothing stored, --overwrite, or a subset sweep growing)."""
    if mode == "overwrite":  # whatever is stored there, even a manifest that no longer reads
        return None
    manifest = store.read_manifest()
    if manifest is None:
        if mode == "resume":
            raise SpecError(f"--resume: nothing to resume at {store.uri} (launch without --resume)")
        return None
    if manifest.get("spec_hash") != spec.hash() and _stored_hash(manifest) != spec.hash():
        # More models of a subset sweep, when the user asked for them (--set seeds=M): a plain
        # --resume that forgot the launch's seeds must not grow it to the preset's default.
        if mode == "resume" and grow_ok and grow(manifest, spec) is not None:
            return None
        raise SpecError(_other_spec(store, manifest, spec, mode, on_dataset, grow_ok))
    intact = store.intact()
    planned = plan_of(manifest)
    done = sum(p.fragment in intact for p in planned)  # by name: a stray fragment counts for nothing
    if mode == "new" and done < len(planned):  # complete: the launch has nothing to do, and says so
        raise SpecError(
            f"{store.uri} already holds this sweep ({done}/{len(planned)} trials done); "
            "pass --resume to finish it or --overwrite to start again"
        )
    return intact


def _other_spec(store: Store, manifest: dict, spec: Spec, mode: Mode, on_dataset, grow_ok: bool) -> str:
    """Why a launch cannot go on where another spec is stored, and what to type instead: the
    stored settings to repeat (--resume), or --overwrite, --name or --results."""
    old, new = manifest.get("spec", {}), spec.model_dump()
    try:  # as this version reads it: a key added since (e.g. probes) is not a difference
        old = validate(old).model_dump()
    except (SpecError, KeyError, TypeError):  # a stored spec this version refuses: compared as stored
        pass
    ignored = {"description", *spec.EXECUTION_KEYS}  # keys that do not make it another sweep
    changed = sorted(k for k in set(old) | set(new) if k not in ignored and old.get(k) != new.get(k))
    if mode == "resume":  # the user wants that sweep: say how to name it, never to delete it
        repeat = [k for k in changed if k in old]
        if "dataset" in repeat and on_dataset is not None:  # the data set's own defaults follow it
            try:
                like = on_dataset(old["dataset"]).model_dump()
                repeat = ["dataset"] + [k for k in repeat if k != "dataset" and like.get(k) != old.get(k)]
            except SpecError:
                pass
        again = " ".join(
            f"--set {shlex.quote(k + '=' + json.dumps(old[k], separators=(',', ':')))}"
            if k != "dataset"
            else f"--dataset {shlex.quote(str(old[k]))}"
            for k in repeat
        )
        # More seeds asked of a sweep that cannot grow (only subset sweeps add models in place).
        why = (
            "; only subset sweeps (memorization, cscore) grow by --set seeds=M --resume: to train more "
            "seeds, launch them beside it with --name NAME"
            if changed == ["seeds"] and grow_ok and getattr(spec, "engine", None) != "subsets"
            else ""
        )
        return (
            f"--resume: {store.uri} holds sweep {spec.name!r} launched with other settings "
            f"(differs in: {', '.join(changed) or 'version'}); to resume it, repeat them: {again}{why}"
        )
    more = (
        "; to add models to it, add --resume"
        if changed == ["seeds"] and grow_ok and grow(manifest, spec) is not None
        else ""
    )
    return (
        f"{store.uri} already holds sweep {spec.name!r} with a different spec "
        f"(differs in: {', '.join(changed) or 'version'}); pass --overwrite to replace "
        f"it, --name NAME to store this one beside it, or --results DIR for a new location{more}"
    )


def _stored_hash(manifest: dict[str, Any]) -> str | None:
    """The stored spec's hash as this version computes it (keys added since then take their
    defaults), or None if it no longer validates."""
    try:
        return validate(manifest["spec"]).hash()
    except (SpecError, KeyError, TypeError):
        return None


def check_request(cpus: float, gpus: float, *, local: bool) -> None:
    """Refuse a per-trial request that no node could ever meet, before Ray starts (SpecError).
    For a local run the machine's own CPUs and GPUs (as Ray would detect them) bound it."""
    if not (math.isfinite(cpus) and cpus > 0):
        raise SpecError(f"--cpus-per-trial {cpus:g}: must be a number > 0")
    if not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise SpecError(f"--gpus-per-trial {gpus:g}: must be a fraction in [0, 1] or a whole number")
    if not local or ray.is_initialized():  # a cluster's (or a running Ray's) nodes are checked once connected
        return
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    have = {
        "CPU": get_num_cpus(),
        "GPU": get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators(),
    }
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        if want > have[name]:
            raise SpecError(
                f"--{name.lower()}s-per-trial {want:g} is more than any node has (this machine: "
                f"{have[name]:g} {name}s; pass --address to use a cluster)"
            )


def check_address(address: str, timeout_s: float = 10.0) -> None:
    """SpecError (one line, naming the address) unless something accepts TCP connections at a
    'host:port' or 'ray://host:port' address within `timeout_s`: `ray.init` would otherwise retry
    for minutes. 'auto' needs no probe (Ray fails at once when no cluster runs here)."""
    import socket

    target = address.removeprefix("ray://")
    if address == "auto" or "://" in target:
        return
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"--address {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise SpecError(
                    f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                    "start one (`ray start --head`) or leave --address out for an embedded "
                    "local Ray"
                ) from None
            time.sleep(0.5)


def _planned_fragments(store: Store) -> set[str]:
    """The fragment names of the sweep stored at `store` (its manifest's plan); empty if none."""
    from sweep.store import StoreError

    try:
        manifest = store.read_manifest()
        return {p.fragment for p in plan_of(manifest)} if manifest else set()
    except (SpecError, StoreError, KeyError, TypeError):
        return set()


def _slots(cpus: float, gpus: float) -> int:
    """Trials the connected Ray can run at once with this per-trial request (at least 1). A resumed
    sweep keeps the plan its manifest recorded, whatever this says now."""
    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // cpus) if cpus else 1
    by_gpu = int(res.get("GPU", 0) // gpus) if gpus else by_cpu
    return max(1, min(by_cpu, by_gpu))


def describe(plans: list[TrialPlan], spec) -> str:
    """'15 trials: 3 cells x packs of <= 20 of 100 seeds' (fig1) or '3 trials: packs of <= 6
    of 18 models (3 archs x 6 corruptions x 1 seed)' (convergence grids); with hyperparameter
    axes, the models in all and the points they span."""
    points = len(spec.points()) if (spec.grid or spec.sample) else 1
    axes = f" x {_plural(points, 'hyperparameter point')}" if points > 1 else ""
    models = sum(len(p.models()) for p in plans)
    if plans and plans[0].members:
        return (
            f"{_plural(len(plans), 'trial')} of up to {_plural(max(len(p.members) for p in plans), 'model')} "
            f"each, {models} in all ({_plural(len(spec.archs), 'arch')} x "
            f"{_plural(len(spec.corruptions), 'corruption')} x {_plural(spec.seeds, 'seed')}{axes})"
        )
    cells = len({p.cell for p in plans})
    per = max(p.seed_hi - p.seed_lo for p in plans)
    if getattr(spec, "engine", "") == "subsets":
        return (
            f"{_plural(len(plans), 'trial')} of up to {_plural(per * max(1, len(plans[0].points)), 'model')} "
            f"each, {spec.seeds:,} models x {_plural(len(spec.ratios), 'subset ratio')} "
            f"({', '.join(f'{r:g}' for r in spec.ratios)}){axes}"
        )
    if points > 1:
        return (
            f"{_plural(len(plans), 'trial')} of up to {_plural(max(len(p.models()) for p in plans), 'model')} "
            f"each, {models:,} in all ({_plural(len(spec.variants), 'variant')}{axes} x {_plural(spec.seeds, 'seed')})"
        )
    return (
        f"{_plural(len(plans), 'trial')}: {_plural(cells, 'cell')} x up to {_plural(per, 'seed')} each, of {spec.seeds}"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def trial_config(
    spec: Spec, plan: TrialPlan, store: Store, data_root: str, cpus: float, prov: dict[str, Any]
) -> dict[str, Any]:
    return {
        "spec": spec.model_dump(),
        "plan": plan.to_dict(),
        "results": store.location,
        "data_root": data_root,
        "cpus": cpus,
        "provenance": prov,
    }


def launch(
    spec: Spec,
    store: Store,
    *,
    data_root: str,
    mode: Mode = "new",
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    callbacks: list | None = None,
    out=sys.stdout,
    preset: str | None = None,
    grow_ok: bool = False,
    spec_args: list[str] | None = None,
) -> LaunchResult:
    """Run the sweep's missing trials; returns what ran. Raises SpecError on a resource request
    the cluster cannot meet (before anything is stored). Without `address`, the Ray this process
    already has or an embedded one, never a cluster found through RAY_ADDRESS or Ray's record of
    the last `ray start` (the CLI turns RAY_ADDRESS into `address` itself). `spec_args`: the command line's
    --dataset and --set arguments, kept in the manifest so that every hint to resume the sweep
    gives them back."""
    started = time.perf_counter()
    own_ray = _start_ray(address)
    try:
        with _sigterm_as_sigint():  # after ray.init, which installs its own SIGTERM handler
            return _launch_on_ray(
                spec,
                store,
                started,
                data_root=data_root,
                mode=mode,
                address=address,
                cpus_per_trial=cpus_per_trial,
                gpus_per_trial=gpus_per_trial,
                callbacks=callbacks,
                out=out,
                preset=preset,
                grow_ok=grow_ok,
                spec_args=spec_args,
            )
    finally:
        if own_ray:
            embedded.stop()


def _start_ray(address: str | None) -> bool:
    """Connect to Ray; True if an embedded one was started here (to stop at the end). Without an
    address: the Ray this process already has (a notebook's, a test's), or an embedded one. Trial
    workers import the installed package. "local": a bare ray.init() would join whatever cluster
    `ray start --head` last registered on this machine (Ray's /tmp/ray/ray_current_cluster)
    while we call it embedded."""
    own_ray = address is None and not ray.is_initialized()
    if own_ray:
        embedded.settings()
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    elif address is not None:
        _connect_settings(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, **_plugin_env())
        except ConnectionError:
            raise SpecError(
                f"--address {address}: no Ray cluster answers there (something listens, but "
                "not a Ray head); check the host and port (`ray status` on the head)"
            ) from None
    return own_ray


def _plugin_env() -> dict[str, Any]:
    """The probe plug-ins named outside this repository (sweep.probes), passed to a cluster's
    workers; an embedded Ray's workers inherit this process's environment."""
    names = (plugins.PROBES_ENV, plugins.VIEWS_ENV)
    env = {n: os.environ[n] for n in names if os.environ.get(n)}
    return {"runtime_env": {"env_vars": env}} if env else {}


def _launch_on_ray(
    spec: Spec,
    store: Store,
    started: float,
    *,
    data_root: str,
    mode: Mode,
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    callbacks: list | None,
    out,
    preset: str | None,
    grow_ok: bool,
    spec_args: list[str] | None,
) -> LaunchResult:
    """`launch`'s work once Ray is up: the store prepared, the missing trials run through Tune."""
    _check_resources(ray.cluster_resources(), ray.nodes(), cpus_per_trial, gpus_per_trial, local=address is None)
    if mode == "overwrite":
        store.clear(_planned_fragments(store))
    prov = dict(provenance(), preset=preset or spec.name)
    if spec_args is not None:
        prov["args"] = list(spec_args)
    plans, todo = _plan_and_todo(spec, store, mode, _slots(cpus_per_trial, gpus_per_trial), grow_ok, out)
    store.write_manifest(spec.model_dump(), spec.hash(), prov, plan=[p.to_dict() for p in plans])
    _announce(spec, plans, todo, address, cpus_per_trial, gpus_per_trial, out)
    result = LaunchResult(planned=len(plans), skipped=len(plans) - len(todo), ran=len(todo))
    if not todo:
        return result
    data_root_abs = str(Path(data_root).expanduser().resolve()) if "://" not in data_root else data_root
    configs = [trial_config(spec, p, store, data_root_abs, cpus_per_trial, prov) for p in todo]
    experiment = time.strftime("launch-%Y%m%d-%H%M%S")
    progress = _Progress(len(todo), out, store, [p.fragment for p in todo], experiment)
    with _quiet_tune():
        grid = _tuner(configs, store, experiment, cpus_per_trial, gpus_per_trial, [progress, *(callbacks or [])]).fit()
    # The store, not Tune's result grid, says what finished: a trial counts once its
    # trials fragment is written. An interrupted Tune returns normally with trials unfinished.
    done = store.completed()
    _drop_checkpoints(store, done)  # also earlier, interrupted launches' checkpoints of what is stored
    result.missing = [p.fragment for p in todo if p.fragment not in done]
    result.interrupted = bool(result.missing) and grid.num_errors < len(result.missing)
    progress.close(done)
    result.wall_seconds = time.perf_counter() - started
    return result


def _plan_and_todo(
    spec: Spec, store: Store, mode: Mode, slots: int, grow_ok: bool, out
) -> tuple[list[TrialPlan], list[TrialPlan]]:
    """The sweep's plan (the stored one on --resume, grown if asked) and its trials not yet
    stored; a damaged fragment is forgotten, so that it runs again."""
    manifest = store.read_manifest() if mode == "resume" else None
    plans = resume_plan(manifest, spec, slots, grow_ok) if manifest else expand(spec, slots)
    if manifest and len(plans) > len(plan_of(manifest)):
        print(
            f"memsweep: growing {spec.name} from {manifest['spec']['seeds']:,} to {spec.seeds:,} models per "
            "ratio; the stored models stay as they are",
            file=out,
        )
    done = set()
    if mode == "resume":
        damaged = store.damaged()
        for fragment, why in damaged.items():
            print(f"memsweep: {fragment} is damaged ({why}): running it again", file=out)
        store.forget(set(damaged))  # its completion mark: a retry that dies leaves it not done
        done = store.completed()
    return plans, [p for p in plans if p.fragment not in done]


def _announce(
    spec: Spec,
    plans: list[TrialPlan],
    todo: list[TrialPlan],
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    out,
) -> None:
    res = ray.cluster_resources()
    print(
        f"memsweep: {spec.name} on {spec.dataset}: {describe(plans, spec)}; "
        f"{len(todo)} to run, {len(plans) - len(todo)} already stored",
        file=out,
    )
    print(
        f"memsweep: Ray {'at ' + address if address else '(embedded)'}: "
        f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; per trial "
        f"{cpus_per_trial:g} CPU + {gpus_per_trial:g} GPU",
        file=out,
        flush=True,
    )


def _tuner(
    configs: list[dict], store: Store, experiment: str, cpus_per_trial: float, gpus_per_trial: float, callbacks: list
) -> tune.Tuner:
    """One Tune trial per config, each with its resources, retried twice from its latest checkpoint."""
    return tune.Tuner(
        tune.with_resources(_entry, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=store.uri_of("_tune"),
            failure_config=tune.FailureConfig(max_failures=2),
            # A retry needs only the latest checkpoint; a finished trial's go (_drop_checkpoints).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
            callbacks=callbacks,
        ),
    )


HEARTBEAT_S = float(os.environ.get("MEMSWEEP_HEARTBEAT_S", "10"))  # seconds between progress redraws


def _no_restore_hint(record: logging.LogRecord) -> bool:
    return "Tuner.restore(" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """`embedded.TUNE_ENV` for this launch only (a notebook's own Tune runs afterwards keep their defaults)."""
    saved = {key: os.environ.get(key) for key in embedded.TUNE_ENV}
    for key, value in embedded.TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # Without the loggers the result grid cannot read per-trial metrics files, and says so once
    # per trial; the store, not the grid, is where results are read.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    # After Ctrl-C Tune suggests `Tuner.restore(...)`; memsweep's own hint (`--resume`) is the one
    # that works here (the store, not Tune's experiment state, says what is left to run).
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_no_restore_hint)
    try:
        yield
    finally:
        tune_log.removeFilter(_no_restore_hint)
        quiet.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM (a scheduler's or `kill`'s stop) ends the sweep as Ctrl-C does: Tune stops its
    trials, the launch marks them interrupted and prints the resume hint. Ray's driver handler
    (installed by ray.init) would exit at once, leaving `_launch.json` saying RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _connect_settings(address: str) -> None:
    """Connecting to a cluster: one attempt, not Ray's default 20 of ~41 s each (~14 minutes) when
    the address answers but is not a Ray head. (`sweep launch` also sets the timeouts Ray reads at
    import: `sweep.cli.CONNECT_ENV`.)"""
    from ray._private import ray_constants

    ray_constants.NUM_REDIS_GET_RETRIES = int(os.environ.get("RAY_NUM_REDIS_GET_RETRIES", "1"))
    if address.removeprefix("ray://").startswith(("127.", "localhost:")):
        ray_constants.ENABLE_RAY_CLUSTER = False  # else Ray swaps the loopback for this host's address


def _entry(config: dict[str, Any]) -> None:
    from sweep import trial

    trial.run(config["trial"])


def _trial_name_of(config: dict[str, Any]) -> str:
    plan = config["trial"]["plan"]
    return f"{plan['cell']}-pack{plan['pack']:03d}"


def _trial_name(t) -> str:
    return f"{_trial_name_of(t.config)}-{t.trial_id}"


def _check_resources(total: dict[str, float], nodes: list[dict], cpus: float, gpus: float, local: bool) -> None:
    check_request(cpus, gpus, local=False)
    largest = {r: max((n["Resources"].get(r, 0) for n in nodes if n.get("Alive")), default=0) for r in ("CPU", "GPU")}
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        if want > largest[name]:
            msg = (
                f"--{name.lower()}s-per-trial {want:g} is more than any node has "
                f"(largest node: {largest[name]:g} {name}s, cluster: {total.get(name, 0):g})"
            )
            if local:
                raise SpecError(msg)
            # An autoscaling cluster may add such nodes on demand: say so, do not refuse.
            print(f"memsweep: warning: {msg}; trials wait for the autoscaler", file=sys.stderr)


def _drop_checkpoints(store: Store, fragments: set[str], launch: str | None = None) -> None:
    """`Store.drop_checkpoints` of stored fragments (a 6-trial digits convergence sweep left 122 MB
    of them beside 300 KB of results); trouble removing them is a warning, never a failed sweep."""
    try:
        store.drop_checkpoints(fragments, launch)
    except OSError as exc:
        print(f"memsweep: warning: could not remove old checkpoints under {store.uri}/_tune: {exc}", file=sys.stderr)


def _running(r: dict, now: float) -> str:
    """A running trial in the heartbeat, from its last report: a fig1 or subset trial by the
    models of it that its current pack covers ("models 4-6 of 50, epoch 1"); another by its
    epoch and, in a pack, its models still training."""
    if "epoch" not in r:
        return f"started {now - r['since']:.0f} s ago"
    acc = f", train {r['train_acc']:.2f}" if "train_acc" in r else ""
    if "trial_models" in r:
        lo, n = r["models_from"], r["members"]
        models = f"model {lo + 1}" if n == 1 else f"models {lo + 1}-{lo + n}"
        return f"{models} of {r['trial_models']}, epoch {r['epoch']}{acc}"
    still = f", {r['members_training']} of {r['members']} models still training" if r.get("members", 1) > 1 else ""
    return f"epoch {r['epoch']}{acc}{still}"


def _by_point(cell: str, result: dict) -> str:
    """A trial of several hyperparameter points: each point's test accuracy (its cell less the
    trial's), so that the means above never stand alone for models trained differently."""
    by = result.get("test_acc_by_cell") or {}
    if len(by) < 2:
        return ""
    return "  (test acc by point: " + ", ".join(f"{c.removeprefix(cell + '-')} {a:.3f}" for c, a in by.items()) + ")"


class _Progress(tune.Callback):
    """One line per finished or failed trial (Tune's own status table is off), and each trial's
    state in the store's `_launch.json` for `sweep status` (JSON: nothing there is ever unpickled)."""

    def __init__(self, total: int, out, store: Store, fragments: list[str], experiment: str | None = None):
        self.total, self.out, self.done, self.start = total, out, 0, time.perf_counter()
        self.store, self.experiment = store, experiment
        # While trials run: a heartbeat naming each running trial's epoch, accuracy and members
        # still training, and an ETA once trials have finished. On a terminal it redraws one
        # line; elsewhere (CI, nohup, ray exec) it is a plain line every HEARTBEAT_S x 3.
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.every = HEARTBEAT_S if self.tty else 3 * HEARTBEAT_S
        self.running: dict[str, dict] = {}
        self.first_start: float | None = None
        self.last_beat, self.drawn = time.perf_counter(), False
        self.state = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "trials": dict.fromkeys(fragments, "PENDING"),
        }
        store.write_launch_state(self.state)

    def _mark(self, trial, state: str) -> None:
        self.state["trials"][_trial_name_of(trial.config)] = state
        self._write()

    def _write(self) -> None:
        try:
            self.store.write_launch_state(self.state)
        except OSError as exc:  # status is advice; a store hiccup must not stop the sweep
            print(f"memsweep: warning: could not update {self.store.uri}/_launch.json: {exc}", file=sys.stderr)

    def close(self, done: set[str]) -> None:
        """The launch is over: a trial still listed as running was cut short (a Ctrl-C, or Tune
        stopping), and `sweep status` should not call it running; one still pending never started."""
        for fragment, state in self.state["trials"].items():
            if fragment not in done and state == "RUNNING":
                self.state["trials"][fragment] = "INTERRUPTED"
        self.state["ended"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        self._write()

    def _line(self, text: str) -> None:
        clear = "\r\033[K" if self.drawn else ""
        self.drawn = False
        print(
            f"{clear}[{self.done:>4}/{self.total} trials | {time.perf_counter() - self.start:7.1f} s] {text}",
            file=self.out,
            flush=True,
        )

    def _eta(self) -> str:
        """Trials left at the pace of those done, timed from the first trial's start (Ray's and
        the trial processes' start-up is behind by then, and is not paid again). A running fig1
        or subset trial counts with the share of its models its last report covers."""
        if self.done < 2 or self.done >= self.total:
            return ""
        elapsed = time.perf_counter() - (self.first_start or self.start)
        done = self.done + sum(
            min(1.0, (r["models_from"] + r["members"]) / r["trial_models"])
            for r in self.running.values()
            if "trial_models" in r
        )
        return f"; ETA ~{elapsed / done * (self.total - done):.0f} s"

    def on_trial_start(self, iteration, trials, trial, **info):
        self.first_start = self.first_start or time.perf_counter()
        self._mark(trial, "RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("stored"):
            return
        self.running[_trial_name_of(trial.config)] = result
        self._beat()

    def on_step_end(self, iteration, trials, **info):
        """Tune's loop turns every fraction of a second: the heartbeat keeps time even while no
        trial reports (a fig1 trial reports once per pack)."""
        for t in trials:
            if t.status == "RUNNING":
                self.running.setdefault(_trial_name_of(t.config), {"since": time.perf_counter()})
        self._beat()

    def _beat(self) -> None:
        now = time.perf_counter()
        if now - self.last_beat < self.every or not self.running:
            return
        self.last_beat = now
        parts = [f"{name} " + _running(r, now) for name, r in list(self.running.items())[:4]]
        more = f" +{len(self.running) - 4} more" if len(self.running) > 4 else ""
        text = (
            f"[{self.done:>4}/{self.total} trials | {now - self.start:7.1f} s] running: "
            + "; ".join(parts)
            + more
            + self._eta()
        )
        if self.tty:  # one row: a wrapped line could not be cleared by the next redraw
            width = shutil.get_terminal_size((120, 24)).columns
            text = text if len(text) < width else text[: width - 2] + "…"
            print("\r\033[K" + text, end="", file=self.out, flush=True)
            self.drawn = True
        else:
            print(text, file=self.out, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self._mark(trial, "TERMINATED")
        self.running.pop(_trial_name_of(trial.config), None)
        # As each finishes (disk peaks lower); only this launch's folder is listed.
        _drop_checkpoints(self.store, {_trial_name_of(trial.config)}, self.experiment)
        r, plan = trial.last_result or {}, trial.config["trial"]["plan"]
        accs = "  ".join(f"{k.split('_')[0]} acc {r[k]:.3f}" for k in ("train_acc", "test_acc") if k in r)
        if plan.get("members"):
            who = (
                f"{len(plan['members'])} models"
                if len(plan["members"]) > 1
                else f"{plan['members'][0][0]} seed {plan['members'][0][1]}"
            )
            fit = (
                f", {r['interpolated']}/{r['members']} interpolated (mean epoch {r['interp_epoch_mean']:.0f})"
                if r.get("interpolated")
                else ", none interpolated"
                if "interpolated" in r
                else ""
            )
            self._line(
                f"{plan['cell']} pack {plan['pack']}: {who}, {r.get('epoch', '?')} epochs{fit}  {accs}" + self._eta()
            )
            return
        seeds = (
            f"seed  {plan['seed_lo']}"
            if plan["seed_hi"] - plan["seed_lo"] == 1
            else f"seeds {plan['seed_lo']}-{plan['seed_hi'] - 1}"
        )
        if trial.config["trial"]["spec"].get("engine") == "subsets" and "fit_acc" in r:
            # the whole training split's accuracy mixes in each model's held-out examples
            accs = f"own subset acc {r['fit_acc']:.3f}  " + accs.replace("train acc", "all-train acc")
        self._line(f"{plan['cell']:>6} {seeds:<11} {accs}{_by_point(plan['cell'], r)}{self._eta()}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A trial failed and Tune retries it (from its latest checkpoint where it has one): say so,
        so that a run that ends complete never hides a failure."""
        self.running.pop(_trial_name_of(trial.config), None)
        self._line(f"{_trial_name_of(trial.config)} failed; Tune retries it (logs: {trial.local_path})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.running.pop(_trial_name_of(trial.config), None)
        self._mark(trial, "ERROR")
        self._line(f"FAILED {_trial_name_of(trial.config)} (logs: {trial.local_path})")
