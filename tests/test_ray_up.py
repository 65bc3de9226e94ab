"""A real `ray up` -> `ray exec sweep launch` -> `ray down` cycle against this machine.

Ray's cluster launcher with the on-prem provider (deploy/onprem.yaml, head at 127.0.0.1) over
ssh to an sshd this test starts on its own port. `ray stop` stops every Ray process of the
machine, so this runs alone: `pytest -m cluster` (its own step in .ci/run). Needs Debian's
openssh-server, rsync and netcat-openbsd (.ci/run installs them).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import free_port

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
RAY = str(VENV / "bin" / "ray")


@pytest.fixture
def sshd(tmp_path):
    for tool in ("/usr/sbin/sshd", "rsync", "nc", "ssh-keygen"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: apt-get install openssh-server rsync netcat-openbsd")
    port = free_port()
    key, host_key = tmp_path / "id_ed25519", tmp_path / "host_ed25519"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (tmp_path / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    config = tmp_path / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {tmp_path}/sshd.pid",
                f"AuthorizedKeysFile {tmp_path}/authorized_keys",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "sshd.log", "w"),
    )
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port, key
    server.terminate()
    server.wait(10)


def run(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{args[:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_ray_up_exec_down(sshd, tmp_path):
    port, key = sshd
    ray_port = free_port()
    activate = f". {VENV}/bin/activate"
    config = yaml.safe_load((ROOT / "deploy" / "onprem.yaml").read_text())
    config.update(
        {
            "cluster_name": f"memsweep-test-{ray_port}",
            "min_workers": 0,
            "max_workers": 0,
            "setup_commands": [],  # the project is installed in this test's venv already
            "head_start_ray_commands": [
                f"{activate} && ray stop",
                f"{activate} && ray start --head --port={ray_port} --num-cpus=2 --include-dashboard=false "
                "--autoscaling-config=~/ray_bootstrap_config.yaml",
            ],
            "worker_start_ray_commands": [],
        }
    )
    config["provider"].update({"head_ip": "127.0.0.1", "worker_ips": []})
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key), "ssh_proxy_command": f"nc %h {port}"}
    config["file_mounts"] = {str(tmp_path / "synced"): "."}  # the project, rsynced as on a real head
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    results = tmp_path / "results"

    started = time.perf_counter()
    run(RAY, "up", "-y", "--no-config-cache", str(path))
    try:
        assert (tmp_path / "synced" / "sweep" / "cli.py").exists()  # file_mounts reached the head
        run(
            RAY,
            "exec",
            str(path),
            f"{activate} && sweep launch fig1-difficulty --address auto --dataset digits "
            f"--set seeds=4 --set pack_size=2 --results {results}",
            timeout=600,
        )
    finally:
        run(RAY, "exec", str(path), f"{activate} && ray stop")  # `ray down` alone may leave Ray running
        run(RAY, "down", "-y", str(path))
    print(f"ray up -> exec -> down: {time.perf_counter() - started:.1f} s")
    trials = pd.read_parquet(results / "fig1-difficulty" / "trials")
    assert len(trials) == 12 and set(trials.status) == {"completed"}
    assert len(pd.read_parquet(results / "fig1-difficulty" / "examples")) == 12 * 1797
    left = subprocess.run(["pgrep", "-f", f"gcs_server.*{ray_port}|raylet.*{ray_port}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"Ray processes left behind: {left.stdout}"
