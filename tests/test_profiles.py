"""Typed training profiles: a typo is refused by the trainer before torch loads, and by `vast-launch`
before anything is rented (from the JSON Schema the repository ships)."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import PROJECT, cloud_env, run_cli

from vast_launch.ledger import Ledger


def test_the_shipped_schema_is_the_one_the_trainer_writes():
    written = subprocess.run([sys.executable, "-m", "ups.profile"], capture_output=True, text=True, check=True).stdout
    assert json.loads(written) == json.loads((PROJECT / "src/ups/profile.schema.json").read_text()), (
        "regenerate it: python -m ups.profile > src/ups/profile.schema.json"
    )


def test_every_default_lives_in_the_schema():
    from ups.profile import validate

    full = validate({})
    assert full["operator"] == {"modes": 16, "width": 32, "layers": 4, "iters": 300, "batch": 64, "lr": 3e-3}
    sections = {"data", "operator", "hybrid", "diffusion_residual", "consistency_distill", "eval"}
    assert set(full) == {"device", "amp", "compile", "train_seed", "checkpoint_every"} | sections
    assert (
        full["train_seed"] == 0
        and full["checkpoint_every"] == 0
        and full["data"]["convention"] == "unit"
        and full["eval"]["seeds"] == 1
    )


CHECK = """
import sys
from ups import train
try:
    train.load_profile(sys.argv[1], "smoke", sys.argv[2:])
except SystemExit as exc:
    print(exc, file=sys.stderr)
    print("torch loaded" if "torch" in sys.modules else "torch not loaded")
    sys.exit(3)
"""


def test_the_stage_list_is_what_the_trainer_the_profile_and_the_evaluation_use():
    """One list of stages: each stage's module runs, its profile sections exist, its methods are evaluated."""
    import importlib

    from ups import stages
    from ups.profile import Profile
    from ups.train import stage_list

    assert stage_list("all") == list(stages.NAMES) == ["operator", "diffusion_residual", "consistency_distill"]
    for stage in stages.STAGES:
        assert callable(stage.runner())
        assert set(stage.sections) <= set(Profile.model_fields), stage
        assert "solver_1x" in stage.evaluates
    evaluate = importlib.import_module("ups.stages.evaluate")
    methods = {m for s in stages.STAGES for m in s.evaluates}
    assert methods <= set(evaluate.LEARNED) | set(stages.BASELINES)
    help_text = subprocess.run([sys.executable, "-m", "ups.train", "--help"], capture_output=True, text=True).stdout
    assert "operator, diffusion_residual, consistency_distill" in help_text


def test_ups_train_refuses_bad_overrides_before_torch_loads():
    config = str(PROJECT / "configs/burgers.yaml")
    cases = [
        (["operator.itres=5"], "ups-train: profile smoke: operator.itres: unknown key (did you mean iters?)"),
        (["operatr.iters=5"], "ups-train: profile smoke: operatr: unknown key (did you mean operator?)"),
        (["operator.iters=true"], "ups-train: profile smoke: operator.iters: Input should be a valid integer (got True)"),
        (["operator.lr=1e-3"], "ups-train: profile smoke: operator.lr: Input should be a valid number (got '1e-3')"),
        (["data.dt=.inf"], "ups-train: profile smoke: data.dt: Input should be a finite number (got inf)"),
        (["eval.rollout_steps=0"], "ups-train: profile smoke: eval.rollout_steps: Input should be greater than or equal to 1"),
    ]
    for overrides, line in cases:
        p = subprocess.run([sys.executable, "-c", CHECK, config, *overrides], capture_output=True, text=True)
        assert p.returncode == 3 and p.stderr.strip().splitlines()[0].startswith(line), (overrides, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and p.stdout.strip() == "torch not loaded", (overrides, p)
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ups import train; print(train.load_profile(sys.argv[1], 'smoke', sys.argv[2:])[2]['operator'])",
            config,
            "operator.iters=5",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "'iters': 5, 'batch': 64" in ok.stdout, ok.stderr


def test_a_profile_typo_is_refused_before_anything_is_rented(repo_factory, cloud):
    cfg = yaml.safe_load((PROJECT / "configs/burgers.yaml").read_text())
    cfg["train"]["profiles"]["full"]["operator"]["itres"] = 6000  # in a profile this launch does not even use
    cfg["train"]["profiles"]["smoke"]["data"]["nu"] = "0.01"
    cfg["wandb"]["mode"] = "offline"
    repo = repo_factory(cfg)
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes"], cwd=repo, env=cloud_env(cloud), timeout=300)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "train.profiles.full.operator.itres: unknown key (did you mean iters?)" in p.stderr
    assert "train.profiles.smoke.data.nu: '0.01' is not of type 'number'" in p.stderr
    assert cloud.cloud.instances == {} and "Traceback" not in p.stderr
    with Ledger() as ledger:
        assert ledger.launches(since=None) == []
    report = json.loads(run_cli(["check", "--config", "configs/test.yaml", "--json"], cwd=repo, env=cloud_env(cloud)).stdout)
    assert sum("unknown key" in f for f in report["failures"]) == 1


def test_a_missing_or_broken_schema_is_one_line(repo_factory, tmp_path):
    for schema, needle in ((None, "no such file in the repository"), ("{", "not JSON"), ('{"type": 5}', "not a JSON Schema")):
        cfg = yaml.safe_load((PROJECT / "configs/burgers.yaml").read_text())
        cfg["train"]["profile_schema"] = "schema.json"
        repo = repo_factory(cfg)
        if schema is not None:
            (repo / "schema.json").write_text(schema)
        p = run_cli(["check", "--local", "--config", "configs/test.yaml"], cwd=repo)
        lines = [line for line in p.stderr.splitlines() if "profile_schema" in line]
        assert p.returncode == 1 and len(lines) == 1 and needle in lines[0], p.stderr
        assert Path(repo / "runs").exists() is False
