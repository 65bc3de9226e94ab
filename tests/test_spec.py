"""Spec loading, overrides, validation and expansion; bad input through the CLI's entry point."""

import pytest

from sweep import cli, planner, presets, seeding
from trainables import budget
from trainables.budget import memory_per_seed


def test_preset_defaults_are_the_papers():
    spec = presets.resolve("fig1-difficulty")
    assert spec.dataset == "cifar10"
    assert spec.model.hidden == [4096, 4096]
    assert spec.optimizer.lr == 0.01 and spec.optimizer.momentum == 0.0
    assert spec.seeds == 100 and spec.epochs == [1]
    assert spec.variants == ["real", "randX", "randY"]


def test_per_dataset_defaults_then_overrides():
    digits = presets.resolve("fig1-difficulty", "digits")
    assert digits.model.hidden == [512, 512] and digits.batch_size == 16
    assert digits.optimizer.momentum == 0.9
    over = presets.resolve("fig1-difficulty", "digits", ["batch_size=32", "epochs=[1, 10]", "optimizer.lr=1e-3"])
    assert over.batch_size == 32 and over.epochs == [1, 10] and over.optimizer.lr == 0.001
    assert presets.resolve("fig1-difficulty", None, ["dataset=digits"]).batch_size == 16


def test_expand_packs_cover_every_seed_once():
    spec = presets.resolve("fig1-difficulty", "digits", ["seeds=10", "pack_size=4"])
    plans = planner.expand(spec)
    assert [(p.seed_lo, p.seed_hi) for p in plans[:3]] == [(0, 4), (4, 8), (8, 10)]
    assert len(plans) == 9 and len({p.fragment for p in plans}) == 9
    assert {p.variant for p in plans} == {"real", "randX", "randY"}


def test_pack_sizes_fit_the_gpu_budget_or_the_cpu_cache():
    spec = presets.resolve("fig1-difficulty", None, ["memory_budget_gb=2"])  # 2 x 4096 on CIFAR
    k = spec.resolved_pack_size(100, "cuda")
    per_seed = memory_per_seed(3072, [4096, 4096], 10, 256)
    assert k * per_seed <= 2 * 2**30 < (k + 1) * per_seed
    assert presets.resolve("fig1-difficulty", "digits", ["pack_size=500", "seeds=7"]).resolved_pack_size(7) == 7
    # digits' 2 x 512 MLP: 2 x 301,066 floats of parameters and momentum a seed (2.4 MB); two trials
    # sharing a 32 MiB cache get 8 MiB each for packs: 3 seeds.
    assert budget.cache_pack_size(50, 64, [512, 512], 10, sharers=2, cache_bytes=32 * 2**20) == 3
    assert budget.cache_pack_size(50, 3072, [4096, 4096], 10, sharers=2, cache_bytes=32 * 2**20) == 1
    # A cache that sysfs reports as huge (a VM's 480 MiB L3) does not make packs huge: 20 MiB of
    # parameters and momentum at most, 8 seeds of this MLP; a small MLP still packs by the hundred.
    assert budget.cache_pack_size(50, 64, [512, 512], 10, cache_bytes=480 * 2**20) == 8
    assert budget.cache_pack_size(5000, 64, [128], 10, cache_bytes=480 * 2**20) == 272
    # CPU scoring chunks: K x chunk x widest layer floats ~ 1 MiB, at least 64 examples.
    assert budget.cpu_score_chunk(1, 64, [512, 512]) == 512 and budget.cpu_score_chunk(8, 64, [512, 512]) == 64
    assert budget.cpu_score_chunk(2, 64, [128]) == 1024
    assert budget.cpu_score_chunk(10, 64, [512, 512]) == 64  # the rule's 51, raised to the floor
    assert budget.cpu_score_chunk(100, 3072, [4096, 4096]) == 64
    assert budget.score_chunk(2**31, 8, 64, [512, 512], 10, 16, cpu=True) == 64  # the CPU cap on the budget's chunk
    assert budget.score_chunk(2**31, 8, 64, [512, 512], 10, 16) > 64
    digits = presets.resolve("fig1-difficulty", "digits")
    assert digits.resolved_pack_size(50, "cpu", sharers=2) == budget.cache_pack_size(50, 64, [512, 512], 10, sharers=2)


def test_fig1_trials_are_sized_to_the_slots_and_packs_do_not_rename_them():
    spec = presets.resolve("fig1-difficulty", "digits")  # 100 seeds x 3 variants
    assert [(p.cell, p.seed_lo, p.seed_hi) for p in planner.expand(spec, slots=2)] == [
        (v, lo, lo + 50) for v in ("real", "randX", "randY") for lo in (0, 50)
    ]
    assert len(planner.expand(spec, slots=32)) == 3 * 20  # ceil(64 / 3) = 22 trials a cell wanted: 20 of 5 seeds
    assert spec.hash() == presets.resolve("fig1-difficulty", "digits", ["pack_size=7", "trial_size=9"]).hash()
    assert [p.seed_hi for p in planner.expand(presets.resolve("fig1-difficulty", "digits", ["trial_size=40"]))][:3] == [
        40,
        80,
        100,
    ]


def test_derived_seeds_are_stable_and_distinct():
    assert seeding.derive_seed(0, "init", 3) == seeding.derive_seed(0, "init", 3)
    seeds = {seeding.derive_seed(0, stream, i) for stream in ("init", "order") for i in range(100)}
    assert len(seeds) == 200
    assert seeding.derive_seed(1, "init", 3) != seeding.derive_seed(0, "init", 3)


def test_spec_hash_ignores_description_only():
    a = presets.resolve("fig1-difficulty", "digits")
    assert a.hash() == presets.resolve("fig1-difficulty", "digits", ["description=other"]).hash()
    assert a.hash() != presets.resolve("fig1-difficulty", "digits", ["seeds=99"]).hash()


BAD = [
    (["show", "no-such-preset"], "unknown preset 'no-such-preset'", "fig1-difficulty"),
    (["show", "fig1-difficulty", "--set", "seedz=3"], "unknown key 'seedz'", "seeds"),
    (["show", "fig1-difficulty", "--set", "model.width=3"], "unknown key 'model.width'", "hidden"),
    (["show", "fig1-difficulty", "--set", "seeds=abc"], "seeds: 'abc'", "integer"),
    (["show", "fig1-difficulty", "--set", "seeds=2.5"], "seeds: 2.5", "integer"),
    (["show", "fig1-difficulty", "--set", "corruption.p=1.5"], "corruption.p: 1.5", "less than or equal to 1"),
    (["show", "fig1-difficulty", "--set", "corruption.p=-0.1"], "corruption.p: -0.1", "greater than or equal to 0"),
    (["show", "fig1-difficulty", "--set", "seeds=0"], "seeds: 0", "greater than or equal to 1"),
    (["show", "fig1-difficulty", "--set", "seeds=-5"], "seeds: -5", "greater than or equal to 1"),
    (["show", "fig1-difficulty", "--dataset", "svhn"], "unknown dataset 'svhn'", "digits, cifar10"),
    (["show", "fig1-difficulty", "--set", "variants=[real, randZ]"], "variants[1]: 'randZ'", "'randX'"),
    (["show", "fig1-difficulty", "--set", "epochs=[10, 1]"], "epochs: [10, 1]", "increasing"),
    (["show", "fig1-difficulty", "--set", "optimizer.lr=0"], "optimizer.lr: 0", "greater than 0"),
    (["show", "fig1-difficulty", "--set", "model.hidden=512"], "model.hidden: 512", "list"),
    (["show", "fig1-difficulty", "--set", "seeds"], "bad --set 'seeds'", "KEY=VALUE"),
    (["show", "fig1-difficulty", "--set", "seeds="], "seeds: none given", "cannot be unset"),
    (
        ["show", "fig1-difficulty", "--dataset", "digits", "--set", "train_size=99999"],
        "train_size 99,999",
        "1 to 1,437",
    ),
    (["show", "cscore", "--dataset", "digits", "--set", "train_size=1438"], "train_size 1,438", "1 to 1,437"),
    (["launch", "fig1-difficulty", "--resume", "--overwrite"], "not allowed with argument", "--resume"),
    (["launch", "fig1-difficulty", "--name", "t1", "--set", "name=other"], "--set name=other", "--name t1"),
]


def run_cli(argv: list[str]) -> int:
    """cli.main's exit code, also when argparse exits by itself."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv,names,allowed", BAD, ids=[" ".join(b[0][2:]) or b[0][1] for b in BAD])
def test_bad_input_is_one_line_exit_2(argv, names, allowed, capsys):
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweep: error: ") and err.count("\n") == 1, err
    assert names in err and allowed in err, err


def test_list_and_show(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "bn-ablation",
        "capacity",
        "convergence-slowdown",
        "cscore",
        "csr",
        "fig1-difficulty",
        "filters",
        "forgetting",
        "memorization",
        "randomization-tests",
        "regularization",
        "regularization-memorization",
        "weight-noise",
        "zhang-table1",
    ]
    assert "fig1-difficulty              Arpit et al. 2017 Fig. 1" in lines[5]
    assert cli.main(["show", "fig1-difficulty", "--dataset", "digits", "--set", "seeds=8"]) == 0
    out = capsys.readouterr().out
    assert "seeds: 8\n" in out and "dataset: digits\n" in out and "# 6 trials: 3 cells" in out
    assert "hyperparameter points" not in out
    sample = "sample={samples: 3, space: {optimizer.lr: {loguniform: [0.001, 0.1]}}}"
    assert cli.main(["show", "fig1-difficulty", "--dataset", "digits", "--set", sample]) == 0
    drawn = [f"lr{p['optimizer.lr']:.4g}" for p in presets.resolve("fig1-difficulty", "digits", [sample]).points()]
    assert f"# 3 hyperparameter points: {', '.join(drawn)}\n" in capsys.readouterr().out


def test_presets_hold_only_what_differs_from_the_family_defaults():
    """A preset's per_dataset block never restates a default its spec family already sets."""
    for name in presets.preset_names():
        raw = presets.load_preset(name)
        family = presets.FAMILY_DATASET_DEFAULTS.get(raw.get("engine", "packed"), {})
        for dataset, block in (raw.get("per_dataset") or {}).items():
            defaults = dict(presets._flatten(family.get(dataset, {})))
            restated = [k for k, v in presets._flatten(block) if k in defaults and defaults[k] == v]
            assert not restated, (name, dataset, restated)


@pytest.mark.parametrize(
    "command",
    [
        ["launch", "fig1-difficulty", "--dataset", "digits"],
        ["status", "fig1-difficulty"],
        ["report", "fig1-difficulty"],
        ["verify", "fig1-difficulty"],
        ["ls"],
    ],
)
def test_results_that_is_a_file_is_one_line_exit_2(command, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert run_cli([*command, "--results", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--results {afile} is a file, not a results folder" in err, err
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("recorded", [False, True])
def test_an_interrupted_launch_says_whether_there_is_anything_to_resume(recorded, tmp_path, capsys, monkeypatch):
    from sweep import launcher

    def interrupted(spec, store, **kw):
        if recorded:  # the launch had recorded its sweep before the interrupt
            store.write_manifest(spec.model_dump(), spec.hash(), {"preset": spec.name, "args": []})
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "launch", interrupted)
    code = run_cli(["launch", "fig1-difficulty", "--dataset", "digits", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1
    if recorded:
        assert "--resume` finishes the sweep" in err
    else:
        assert "interrupted before the sweep started; nothing was stored" in err and not any(tmp_path.iterdir())


def test_an_interrupt_anywhere_in_a_command_is_one_line(tmp_path, capsys, monkeypatch):
    from sweep import cli as cli_module

    def interrupted(args, spec):
        raise KeyboardInterrupt  # e.g. while Ray is imported, before the launch handles it

    monkeypatch.setattr(cli_module, "_launch", interrupted)
    assert run_cli(["launch", "fig1-difficulty", "--dataset", "digits", "--results", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "sweep: error: interrupted during `sweep launch`\n"
