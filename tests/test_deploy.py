"""Cluster configs: Ray's own validator (offline), and they install this project with its pins."""

import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["cluster.yaml", "deploy/onprem.yaml"])
def test_ray_validates_the_cluster_config(path):
    config = yaml.safe_load((ROOT / path).read_text())
    validate_config(prepare_config(config))  # raises on a bad config


def test_aws_cluster_shape():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials run on workers
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1  # autoscales from zero
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU instance family
    setup = " ".join(config["setup_commands"])
    assert "deploy/constraints.txt" in setup and '-e "$HOME/memsweep[train]"' in setup
    assert config["file_mounts"] == {"~/memsweep": "."}
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert cmd.startswith("source ~/memsweep/.venv/bin/activate")


def test_constraints_pin_every_runtime_dependency():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split("[")[0].split(">")[0].split("=")[0].strip().lower() for d in deps}
    pins = {
        line.split("==")[0].lower()
        for line in (ROOT / "deploy/constraints.txt").read_text().splitlines()
        if "==" in line
    }
    assert names <= pins, names - pins


def test_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "deploy/slurm.sh")], check=True)


@pytest.mark.parametrize("path", ["cluster.yaml", "deploy/onprem.yaml", "deploy/slurm.sh"])
def test_every_deploy_recipe_installs_the_training_stack(path):
    """The core install is the analyst's (no torch, no Ray): a node that runs trials needs [train]."""
    text = (ROOT / path).read_text()
    assert "memsweep[train]" in text or "'.[train]'" in text, path


def test_every_package_of_the_tree_is_installed():
    """A non-editable install (`pip install .` on a cluster's nodes) ships the packages
    pyproject.toml lists: every folder of ours with an __init__.py must be among them."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    rooms = ("catalog", "sweep", "trainables", "analysis")
    found = {str(p.parent.relative_to(root)).replace("/", ".") for r in rooms for p in (root / r).rglob("__init__.py")}
    assert found == listed, found ^ listed
