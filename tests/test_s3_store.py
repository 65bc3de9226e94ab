"""The store on S3: a whole sweep through the real CLI and Ray, to a local S3 server (moto).

Trials write their fragments straight to s3:// through pyarrow.fs; Tune keeps its state there
too; analysis and the report read the same URI. Credentials and endpoint come from the
standard AWS_* environment variables, as on a real cluster.
"""

import os
import subprocess
import sys
import time

import pytest
from conftest import SWEEP, free_port, launch_args

BUCKET = "memsweep-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket; the AWS_* variables point at it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        for _ in range(100):  # the server takes a moment to listen
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        yield f"s3://{BUCKET}/results"
    finally:
        server.terminate()
        server.wait(10)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def ray_with_s3_env(s3):
    """One Ray for the module, started after the AWS_* variables are set so workers inherit them."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def keys(prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_sweep_to_s3_and_back(s3, ray_with_s3_env, tmp_path):
    from analysis import load

    args = launch_args(
        "fig1-difficulty", "seeds=4", "pack_size=2", "variants=[real,randY]", results=s3, address=ray_with_s3_env
    )
    proc = subprocess.run([*SWEEP, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f'pandas.read_parquet("{s3}/fig1-difficulty/examples")' in proc.stdout
    fragments = sorted(k.rsplit("/", 1)[1] for k in keys("results/fig1-difficulty/examples/") if k.endswith(".parquet"))
    assert fragments == [f"{v}-pack00{i}.parquet" for v in ("randY", "real") for i in (0, 1)]
    assert any(k.startswith("results/fig1-difficulty/_tune/") for k in keys("results/"))  # Tune state too
    examples = load.load_table(s3, "fig1-difficulty", "examples")
    assert len(examples) == 4 * 2 * 1797 and not examples.duplicated(["variant", "seed", "split", "index"]).any()

    # A trial that never finished (no trials fragment) is re-run by --resume; rows stay unique.
    import boto3

    boto3.client("s3").delete_object(Bucket=BUCKET, Key="results/fig1-difficulty/trials/real-pack001.parquet")
    proc = subprocess.run([*SWEEP, *args, "--resume"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "1 to run, 3 already stored" in proc.stdout, proc.stderr[-2000:]
    assert len(load.load_table(s3, "fig1-difficulty", "trials")) == 8
    assert len(load.load_table(s3, "fig1-difficulty", "examples")) == 4 * 2 * 1797
    assert not [
        k for k in keys("results/") if k.rsplit("/", 1)[1].startswith(".") and "/_tune/" not in k
    ]  # no temporary files of the store left

    out = tmp_path / "report.html"
    report = subprocess.run(
        [*SWEEP, "report", "fig1-difficulty", "--results", s3, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert "Complete: real: 4/4 seeds, randY: 4/4 seeds" in out.read_text()


def test_the_lock_on_s3_is_a_lease_that_refuses_a_second_launch_and_expires(s3, monkeypatch):
    import json

    import pyarrow.fs as pafs

    from sweep import store as store_module
    from sweep.store import Store, StoreError

    first, second = Store(s3, "leased"), Store(s3, "leased")
    with first.lock("sweep launch first"):
        assert "leased/_lock" in " ".join(keys("results/leased/"))
        with pytest.raises(StoreError, match=r"in use by another launch \(pid \d+ on .*sweep launch first\)"):
            with second.lock("sweep launch second"):
                pass
    assert keys("results/leased/") == []  # released: the lease is gone, and the empty folder
    # A lease whose holder died (no refresh for LEASE_SECONDS) is taken over.
    fs, path = pafs.FileSystem.from_uri(f"{s3}/stale/_lock")
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({"pid": 1, "host": "gone", "heartbeat": "not a number"}).encode())
    with Store(s3, "stale").lock("sweep launch after a crash"):
        pass
    monkeypatch.setattr(store_module, "LEASE_SECONDS", 1e9)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({"pid": 1, "host": "alive", "heartbeat": time.time()}).encode())
    with pytest.raises(StoreError, match="pid 1 on alive"):
        with Store(s3, "stale").lock("x"):
            pass


def test_drop_checkpoints_on_s3_removes_exactly_the_stored_fragments_checkpoints(s3):
    """Tune's own layout on the bucket: launches under `_tune/`, a folder `<fragment>-<trial id>`
    per trial (sweep.launcher._trial_name) holding Tune's files and `checkpoint_*` folders. S3
    has no folders, only keys: what goes is every key under the stored fragment's checkpoints,
    in every launch, and nothing else (not its Tune files, not a neighbouring pack's)."""
    import boto3

    from sweep.store import Store

    store, prefix = Store(s3, "ckpt"), "results/ckpt/_tune/"
    stored, running = "mlp1-labels-pack000", "mlp1-labels-pack001"
    layout = [f"{launch}/experiment_state-2026-01-01_00-00-00.json" for launch in ("launch-A", "launch-B")]
    for launch, trial_id in (("launch-A", "1a2b3_00000"), ("launch-B", "4c5d6_00000")):  # interrupted, then resumed
        for fragment in (stored, running):
            trial = f"{launch}/{fragment}-{trial_id}"
            layout += [f"{trial}/params.json", f"{trial}/result.json"]
            layout += [f"{trial}/checkpoint_00000{i}/{name}" for i in (0, 1) for name in ("state.pt", ".metadata.json")]
    client = boto3.client("s3")
    for key in layout:
        client.put_object(Bucket=BUCKET, Key=prefix + key, Body=b"x" * 100)

    assert store.drop_checkpoints({stored}) == 4  # 2 launches x 2 checkpoints
    gone = {k for k in layout if k.startswith(("launch-A/" + stored, "launch-B/" + stored)) and "/checkpoint_" in k}
    assert len(gone) == 8
    left = {k.removeprefix(prefix) for k in keys(prefix) if not k.endswith("/")}  # "/": pyarrow's folder markers
    assert left == set(layout) - gone
