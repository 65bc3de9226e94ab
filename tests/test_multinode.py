"""Multi-node runs and faults on a real multi-node Ray (ray.cluster_utils.Cluster, fake GPUs).

Head with no CPUs (no trials on it) and two workers with 2 CPUs and 1 (fake) GPU each.
"""

import io
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import SWEEP, launch_args
from ray import tune

from sweep import launcher, presets
from sweep.store import Store

KEYS = ["variant", "seed", "epoch", "split", "index"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    marker = tmp_path_factory.mktemp("fault") / "crashed-once"
    os.environ["MEMSWEEP_FAULT"] = f"after-examples:{marker}"  # workers inherit it; see test_crash
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers, marker
    os.environ.pop("MEMSWEEP_FAULT")
    import ray

    ray.shutdown()
    c.shutdown()


def spec(*extra):
    return presets.resolve(
        "fig1-difficulty", "digits", ["seeds=8", "pack_size=2", "variants=[real]", "model.hidden=[64]", *extra]
    )


def launch(cluster_address, tmp_path, spec, callbacks=(), gpus=0.5):
    import ray

    ray.shutdown()  # the launcher connects by address, as on a real cluster
    store = Store(tmp_path, spec.name)
    result = launcher.launch(
        spec,
        store,
        data_root=str(tmp_path / "data"),
        address=cluster_address,
        cpus_per_trial=1,
        gpus_per_trial=gpus,
        callbacks=list(callbacks),
        out=io.StringIO(),
    )
    return result, tmp_path / spec.name


def test_trials_spread_over_nodes_and_crash_is_retried_once(cluster, tmp_path):
    """4 trials at 0.5 GPU: two per worker node. One trial crashes after writing its examples
    fragment (the fault hook, once per module); Tune retries it and no row is duplicated."""
    c, workers, marker = cluster
    result, folder = launch(c.address, tmp_path, spec())
    assert not result.missing and marker.exists()  # the crash happened, and was recovered from
    trials = pd.read_parquet(folder / "trials")
    assert trials.node_id.nunique() == 2 and len(trials) == 8
    assert set(trials.node_id) == {w.node_id for w in workers}
    examples = pd.read_parquet(folder / "examples")
    assert len(examples) == 8 * 1797 and not examples.duplicated(KEYS).any()


class RemoveNodeAfterStarts(tune.Callback):
    def __init__(self, cluster, node, starts: int):
        self.cluster, self.node, self.starts, self.seen, self.recovered = cluster, node, starts, 0, 0

    def __getstate__(self):  # Tune pickles its callbacks with the experiment state
        return {k: v for k, v in self.__dict__.items() if k not in ("cluster", "node")}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.seen += 1
        if self.seen == self.starts:
            self.cluster.remove_node(self.node, allow_graceful=False)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.recovered += 1


def test_worker_node_removed_mid_sweep(cluster, tmp_path):
    c, workers, _ = cluster
    removal = RemoveNodeAfterStarts(c, workers[1], starts=4)  # every slot busy, then a node goes
    result, folder = launch(c.address, tmp_path, spec("epochs=[1,2,3,4]", "seeds=12"), [removal])
    assert not result.missing, result
    assert removal.recovered >= 1  # trials on the lost node were rescheduled
    trials = pd.read_parquet(folder / "trials")
    assert len(trials) == 12 and not trials.duplicated(["variant", "seed"]).any()
    examples = pd.read_parquet(folder / "examples")
    assert len(examples) == 12 * 4 * 1797 and not examples.duplicated(KEYS).any()


def test_interrupted_driver_resumes_to_the_same_store(cluster, tmp_path):
    """SIGINT to `sweep launch` mid-sweep, then --resume: the store equals an uninterrupted
    run's, row for row."""
    import ray

    c = cluster[0]
    ray.shutdown()
    args = launch_args(
        "fig1-difficulty",
        "seeds=16",
        "pack_size=2",
        "model.hidden=[64]",
        "variants=[real,randY]",
        address=c.address,
        gpus_per_trial="0.5",
    )
    full = subprocess.run(
        [*SWEEP, *args, "--results", str(tmp_path / "a")], capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr[-2000:]

    trials_dir = tmp_path / "b" / "fig1-difficulty" / "trials"
    proc = subprocess.Popen(
        [*SWEEP, *args, "--results", str(tmp_path / "b")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (trials_dir.exists() and len(list(trials_dir.glob("*.parquet"))) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    stored = len(list(trials_dir.glob("*.parquet")))
    assert proc.returncode == 130 and "--resume" in err, (proc.returncode, err[-2000:])
    assert 2 <= stored < 16
    assert "Tuner.restore(" not in err  # Tune's own hint; memsweep's --resume is the one that works
    status = subprocess.run(
        [*SWEEP, "status", "fig1-difficulty", "--results", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    total = next(line for line in status.stdout.splitlines() if line.startswith("total:"))
    counts = {name: int(n) for n, name in (part.split(" ", 1) for part in total[7:].split(", "))}
    # Nothing is left "running" once the driver has stopped: what Ctrl-C cut short is interrupted,
    # what was still queued is not started.
    # (Seeds, two a trial; four trials run at once.)
    assert counts["running"] == 0 and counts["done"] == 2 * stored, total
    assert counts["interrupted"] + counts["not started"] == 32 - 2 * stored and counts["interrupted"] <= 8, total

    resumed = subprocess.run(
        [*SWEEP, *args, "--results", str(tmp_path / "b"), "--resume"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{16 - stored} to run, {stored} already stored" in resumed.stdout
    for table, keys, cols in (
        ("examples", KEYS, ["label", "correct", "pred", "p_label", "loss"]),
        ("epochs", ["variant", "seed", "epoch"], ["train_acc", "test_loss", "running_loss"]),
        ("trials", ["variant", "seed"], ["init_seed", "order_seed", "final_test_acc"]),
    ):
        a = pd.read_parquet(tmp_path / "a" / "fig1-difficulty" / table).sort_values(keys).reset_index(drop=True)
        b = pd.read_parquet(tmp_path / "b" / "fig1-difficulty" / table).sort_values(keys).reset_index(drop=True)
        assert len(a) == len(b)
        pd.testing.assert_frame_equal(a[keys + cols], b[keys + cols])


def test_launch_without_address_starts_its_own_ray_beside_a_registered_cluster(cluster, tmp_path):
    """A cluster registered on this machine (`ray start --head`, or this module's Cluster, write
    its address where a bare ray.init() looks first) is not joined by a launch without --address:
    the sweep runs on an embedded Ray of its own, and says so."""
    import ray

    c, workers, _ = cluster
    ray.shutdown()
    env = {k: v for k, v in os.environ.items() if k not in ("MEMSWEEP_FAULT", "RAY_ADDRESS")}
    run = subprocess.run(
        [
            *SWEEP,
            *launch_args("fig1-difficulty", "seeds=2", "variants=[real]", "model.hidden=[64]", results=str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Ray (embedded)" in run.stdout and "2 GPUs" not in run.stdout, run.stdout
    trials = pd.read_parquet(tmp_path / "fig1-difficulty" / "trials")
    cluster_nodes = {w.node_id for w in workers} | {c.head_node.node_id}
    assert len(trials) == 2 and not set(trials.node_id) & cluster_nodes
