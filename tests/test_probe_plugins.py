"""Probes are plug-ins: a toy probe written here, as two modules outside the repository and
nothing else, becomes a spec key (`probes.toy`), runs in a fig1 sweep through the real CLI and
Ray beside a built-in probe, lands in the probes table and gets its report section. The
registries, and `ProbesSpec` made from them, are checked in-process."""

import os
import re
import subprocess

import numpy as np
import pytest
from conftest import cli, launch_args

from analysis import load

SEEDS = 2
TOY_MEASURE = '''"""Toy probe: the mean top-class probability on the first n test images."""

from typing import Annotated

from pydantic import Field

from sweep.bounds import Strict
from sweep.probes import row

TABLE = "probes"


class Config(Strict):
    every: Annotated[int, Field(ge=1, le=1000)] = 1
    n: Annotated[int, Field(ge=1, le=1000)] = 50


def on_epoch(run, config, member, k, epoch):
    if epoch % config.every:
        return []
    import torch

    from trainables.models import eval_mode

    x, model = run.data.split("test").x[: config.n], member()
    with torch.no_grad(), eval_mode(model):  # leaves the model as it found it, for the next probe
        confidence = torch.softmax(model(x), -1).max(-1).values.mean()
    return [row(k, "toy", epoch, float(confidence), split="test", n=len(x))]


def at_end(run, config, member, k, epoch):
    return []
'''
TOY_VIEW = '''"""Toy probe's section: its mean value per epoch."""

TABLE = "probes"


def section(config, rows):
    means = rows.groupby("epoch").value.mean()
    return ["<h2>Toy confidence</h2><p id='toy'>" + ", ".join(f"{e}: {v:.3f}" for e, v in means.items()) + "</p>"]
'''


@pytest.fixture
def toy_env(tmp_path, cli_env):
    """The toy probe's two modules in a folder of their own, and the environment that names them."""
    for package, source in (("toy_measure", TOY_MEASURE), ("toy_view", TOY_VIEW)):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "toy.py").write_text(source)
    return dict(
        cli_env,
        PYTHONPATH=os.pathsep.join([str(tmp_path), cli_env.get("PYTHONPATH", "")]),
        MEMSWEEP_PROBES="toy_measure.toy",
        MEMSWEEP_PROBE_VIEWS="toy_view.toy",
    )


def launch(env, results, *sets: str) -> subprocess.CompletedProcess:
    fig1 = f"seeds={SEEDS}", "variants=[real, randY]", "epochs=[1, 2]"
    return cli(*launch_args("fig1-difficulty", *fig1, *sets, results=results), env=env)


def test_a_toy_probe_runs_in_a_fig1_sweep_and_reports(toy_env, tmp_path):
    results = tmp_path / "results"
    proc = launch(toy_env, results, "probes.toy.every=1", "probes.weight_noise={sigmas: [0, 0.5], draws: 1}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = load.load_table(str(results), "fig1-difficulty", "probes")
    toy = rows[rows.probe == "toy"]
    # every member (2 variants x 2 seeds) at initialization and after each of its 2 epochs
    assert len(toy) == 2 * SEEDS * 3
    assert sorted(toy.epoch.unique()) == [0, 1, 2]
    assert toy.value.between(0.1, 1).all() and (toy.n == 50).all()
    noise = rows[rows.probe == "weight_noise"]  # a built-in probe in a fig1 sweep: sigma 0 and 0.5, two splits
    assert len(noise) == 2 * SEEDS * 2 * 2 and set(noise.split) == {"train", "test"}
    assert (noise.epoch == 2).all()

    out = tmp_path / "report.html"
    report = cli("report", "fig1-difficulty", "--results", results, "--out", out, env=toy_env)
    assert report.returncode == 0, report.stderr[-3000:]
    page = out.read_text()
    assert "Weight-noise sensitivity" in page
    # one toy section per point (a fig1 sweep without axes has one), with the stored means
    shown = re.findall(r"<p id='toy'>(.*?)</p>", page)
    expect = ", ".join(f"{e}: {v:.3f}" for e, v in toy.groupby("epoch").value.mean().items())
    assert shown == [expect]
    no_view = {k: v for k, v in toy_env.items() if k != "MEMSWEEP_PROBE_VIEWS"}
    again = cli("report", "fig1-difficulty", "--results", results, "--out", out, env=no_view)
    assert again.returncode == 0 and "Probe <b>toy</b> stored rows" in out.read_text()


def test_a_bad_toy_value_is_one_line_and_stores_nothing(toy_env, tmp_path):
    results = tmp_path / "results"
    proc = launch(toy_env, results, "probes.toy.every=0")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "bad value for probes.toy.every: 0 (Input should be greater than or equal to 1)" in proc.stderr
    assert not results.exists() or not any(results.rglob("*.parquet"))


def test_without_the_plug_in_its_key_is_unknown(cli_env, tmp_path):
    proc = launch(cli_env, tmp_path / "results", "probes.toy.every=1")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "unknown key 'probes.toy.every': probes has no 'toy'" in line and "MEMSWEEP_PROBES" in line, line


def test_probes_spec_is_made_from_the_registry():
    from analysis import probes as views
    from sweep import probes, spec

    assert {"csr", "filters", "weight_noise"} <= set(probes.REGISTRY)
    on = spec.validate({"name": "x", "probes": {"csr": {"every": 1}}}).probes.csr  # a fig1 spec's block
    assert isinstance(on, probes.REGISTRY["csr"].Config) and on.every == 1
    assert list(views.REGISTRY) == list(probes.REGISTRY)  # every probe has its section
    for name, module in probes.REGISTRY.items():
        assert views.REGISTRY[name].TABLE == module.TABLE


def test_a_probe_that_is_off_leaves_every_stored_hash_as_it_was():
    """The hashes of a fig1 and a convergence preset, as stored before specs had plug-in probes
    (fig1 had no probes block then); turning a probe on changes the hash."""
    from sweep import presets

    fig1 = presets.resolve("fig1-difficulty", "digits")
    assert fig1.hash() == "7f6e9a70542c22f3"
    assert presets.resolve("randomization-tests", "digits").hash() == "f2c8e0a081b91a7f"
    assert presets.resolve("fig1-difficulty", "digits", ["probes.csr={every: 1}"]).hash() != fig1.hash()


@pytest.mark.parametrize(
    "preset, sets, says",
    [
        ("fig1-difficulty", ["probes.csr={split: val}"], "probes.csr reads the val split, which only convergence"),
        ("memorization", ["probes.weight_noise={splits: [val]}"], "which only convergence sweeps"),
        ("randomization-tests", ["probes.csr={split: val}", "validation.size=0"], "set validation.size > 0"),
        ("fig1-difficulty", ["probes.filters={}"], "probes.filters needs convolutional archs, got mlp"),
        ("fig1-difficulty", ["epochs=[1, 2]", "probes.csr={every: 5}"], "falls on none of the epochs this sweep"),
        ("memorization", ["arch=cnn", "probes.filters={epochs: [3]}"], "probes.filters.epochs lists 3, which"),
        ("weight-noise", ["probes.weight_noise.sigmas=[1, 2]"], "must start at 0 (the model itself"),
        ("fig1-difficulty", ["probes.margin={}"], "a probe of your own is named in MEMSWEEP_PROBES"),
    ],
)
def test_a_probe_that_cannot_run_is_refused_in_one_line(preset, sets, says):
    from sweep import presets
    from sweep.spec import SpecError

    with pytest.raises(SpecError, match=re.escape(says)) as exc:
        presets.resolve(preset, "digits", sets)
    assert "\n" not in str(exc.value)


def test_a_plug_in_that_does_not_import_is_one_line(cli_env, tmp_path):
    bad = dict(cli_env, MEMSWEEP_PROBES="no_such_probe_module")
    proc = cli("ls", "--results", tmp_path, env=bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "MEMSWEEP_PROBES names 'no_such_probe_module', which fails to import" in proc.stderr
    (tmp_path / "hookless.py").write_text(
        "from sweep.bounds import Strict\nTABLE = 'probes'\nclass Config(Strict): pass\n"
    )
    bad = dict(cli_env, MEMSWEEP_PROBES="hookless", PYTHONPATH=str(tmp_path))
    proc = cli("ls", "--results", tmp_path, env=bad)
    assert proc.returncode == 2 and "probe hookless lacks on_epoch, at_end" in proc.stderr
    bad = dict(cli_env, MEMSWEEP_PROBE_VIEWS="no_such_view_module")
    proc = cli("report", "x", "--results", tmp_path, env=bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "MEMSWEEP_PROBE_VIEWS names 'no_such_view_module'" in proc.stderr


def test_a_sweep_stored_before_it_had_probes_differs_only_in_what_changed(tmp_path):
    """A fig1 manifest written before fig1 specs had a probes block: resuming it with other seeds
    names seeds, never probes, and repeats only what the user must."""
    from sweep import launcher, presets
    from sweep.store import Store

    spec = presets.resolve("fig1-difficulty", "digits", ["seeds=4"])
    old = spec.model_dump() | {"seeds": 2}
    del old["probes"]
    why = launcher._other_spec(Store(str(tmp_path), spec.name), {"spec": old}, spec, "resume", None, True)
    assert "(differs in: seeds)" in why and "probes" not in why and "--set seeds=2" in why


def test_a_probe_that_raises_names_itself(monkeypatch):
    from types import SimpleNamespace

    from sweep import job as jobs
    from sweep import probes

    def on_epoch(run, config, member, k, epoch):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(probes.REGISTRY, "boom", SimpleNamespace(TABLE="probes", on_epoch=on_epoch))
    members = SimpleNamespace(k=1, labels=None, subsets=None)
    job = SimpleNamespace(data=None, seeds=[0], members=members)
    configs = SimpleNamespace(**(dict.fromkeys(probes.REGISTRY) | {"boom": {}}))  # only boom on
    hooks = jobs.Probes(SimpleNamespace(seed=0, probes=configs, norms=False), job)
    assert hooks.on == {"boom": {}}
    with pytest.raises(RuntimeError, match=r"probe boom failed in on_epoch \(member 0, epoch 3\): ZeroDivisionError"):
        hooks.on_epoch(SimpleNamespace(member=lambda k: None), 3, np.ones(1, dtype=bool))
