"""Autoscaling to GPU workers on one machine: Ray's fake multi-node provider.

The head has no GPU; when trials ask for a GPU fraction the autoscaler launches fake
{"CPU": 2, "GPU": 1} worker nodes (real raylets on this machine), the sweep completes on
them, and idle workers are removed again. `ray start`/`ray stop` act on the whole machine,
so this runs alone: `pytest -m cluster`.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SWEEP, free_port, launch_args

pytestmark = pytest.mark.cluster
RAY = str(Path(sys.prefix) / "bin" / "ray")


def node_ip() -> str:
    """The address Ray binds to here (it canonicalizes 127.0.0.1 to it)."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def fake_cluster_config(port: int) -> dict:
    """What `ray up` would have prepared for provider fake_multinode (Ray ships no example)."""
    return {
        "cluster_name": "memsweep-fake",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,  # scale down after 6 s idle
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"{node_ip()}:{port}",
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "auth": {"ssh_user": "ubuntu"},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def alive_nodes(address: str) -> list[dict]:
    code = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print('NODES', json.dumps([n['Resources'] for n in ray.nodes() if n['Alive']]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = next(s for s in out.stdout.splitlines() if s.startswith("NODES "))  # the autoscaler prints too
    return json.loads(line[len("NODES ") :])


def test_gpu_workers_scale_up_and_down(tmp_path):
    port = free_port()
    config = tmp_path / "fake.json"
    config.write_text(json.dumps(fake_cluster_config(port)))
    env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    subprocess.run([RAY, "stop", "--force"], check=True, capture_output=True)
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--autoscaling-config={config}",
            "--include-dashboard=false",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    address = "auto"  # this test runs alone: the one Ray on the machine
    try:
        assert [n.get("GPU", 0) for n in alive_nodes(address)] == [0]  # no GPU before the sweep
        started = time.perf_counter()
        proc = subprocess.run(
            [
                *SWEEP,
                *launch_args(
                    "fig1-difficulty",
                    "seeds=4",
                    "pack_size=1",
                    "variants=[real]",
                    "model.hidden=[64]",
                    gpus_per_trial="0.5",
                    address=address,
                    results=str(tmp_path),
                ),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "trials wait for the autoscaler" in proc.stderr  # no GPU node when it started
        print(f"sweep with scale-up: {time.perf_counter() - started:.1f} s")
        trials = pd.read_parquet(tmp_path / "fig1-difficulty" / "trials")
        assert len(trials) == 4
        assert all(json.loads(r)["GPU"] == 0.5 for r in trials.resources)
        assert trials.node_id.str.startswith("fffffffffff").all()  # fake worker nodes, not the head
        deadline = time.time() + 120
        while time.time() < deadline and len(alive_nodes(address)) > 1:
            time.sleep(3)
        assert len(alive_nodes(address)) == 1, "idle GPU workers were not removed"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
