"""Results that outlive the instance: a real S3 API server on loopback (moto) and a directory store, real
detached launches that nobody follows, and what status, pull, logs, report and --resume read back."""

import json

import pytest
import yaml
from conftest import cloud_env, git, no_live_processes, run_cli, stage_config, wait_for

WRITES = (
    'mkdir -p "$VL_OUT/train" && printf "weights ± é\\n" > "$VL_OUT/train/model.bin" && echo "trained ± café" && '
    'printf \'{"step": 1, "loss": 2.0}\\n{"step": 2, "loss": 1.0}\\n\' > "$VL_OUT/train/metrics.jsonl"'
)


def status_of(repo, launch_id, env):
    p = run_cli(["status", launch_id, "--json"], cwd=repo, env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def detach(repo, cloud, env, *extra):
    p = run_cli(["--config", "configs/test.yaml", "--yes", "--detach", *extra], cwd=repo, env={**cloud_env(cloud), **env})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "detached:" in p.stdout
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo, env={**cloud_env(cloud), **env}).stdout)
    return row["launch_id"]


def gone(cloud):
    return all(i.status == "destroyed" for i in cloud.cloud.instances.values())


@pytest.fixture(params=["s3", "file"])
def store(request, tmp_path):
    """(outputs section, env) for each kind of store."""
    if request.param == "s3":
        _, outputs = request.getfixturevalue("s3")
        return outputs, {}
    return {"url": (tmp_path / "store").as_uri(), "sync_every_minutes": 0}, {}


def test_a_detached_launch_that_nobody_follows_is_read_back_from_its_store(repo_factory, cloud, store, tmp_path):
    outputs, env = store
    repo = repo_factory(stage_config([{"name": "train", "command": WRITES}], outputs=outputs))
    lid = detach(repo, cloud, env)
    assert wait_for(lambda: gone(cloud), 120), cloud.cloud.describe()
    (inst,) = cloud.cloud.instances.values()
    assert inst.destroyed_by == "instance"
    assert no_live_processes(cloud)
    envs = {**cloud_env(cloud), **env}

    row = status_of(repo, lid, envs)
    assert row["state"] == "destroyed", row
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert row["stage"] == "train done"  # the exact stage times came with result.json

    pulled = tmp_path / "pulled"
    p = run_cli(["pull", lid, "--to", str(pulled)], cwd=repo, env=envs)
    assert p.returncode == 0, p.stderr
    assert (pulled / "train" / "model.bin").read_text() == "weights ± é\n"

    logs = run_cli(["logs", lid, "--tail", "5"], cwd=repo, env=envs)
    assert logs.returncode == 0, logs.stderr
    assert "final sync:" in logs.stdout and "result rc=0" in logs.stdout, logs.stdout
    assert "trained ± café" in run_cli(["logs", lid, "--tail", "100"], cwd=repo, env=envs).stdout
    report = run_cli(["report", lid, "--json"], cwd=repo, env=envs)
    assert report.returncode == 0, report.stderr
    assert [c["key"] for c in json.loads(report.stdout)["curves"]] == ["loss"]  # the stored metrics, read back
    assert git(repo, "status", "--porcelain") == ""


def test_a_failed_stage_read_from_the_store_keeps_its_own_code(repo_factory, cloud, store):
    outputs, env = store
    stages = [{"name": "ok", "command": "true"}, {"name": "bad", "command": "echo partial > $VL_OUT/p.txt; exit 7"}]
    repo = repo_factory(stage_config(stages, outputs=outputs))
    lid = detach(repo, cloud, env)
    assert wait_for(lambda: gone(cloud), 120)
    row = status_of(repo, lid, {**cloud_env(cloud), **env})
    assert row["end_reason"] == "failed in stage bad (exit 7); the instance destroyed itself", row
    listing = run_cli(["pull", lid, "--list"], cwd=repo, env={**cloud_env(cloud), **env})
    assert "p.txt" in listing.stdout, listing.stdout + listing.stderr


def test_the_deadline_watchdog_syncs_partial_outputs_and_destroys_by_the_deadline(repo_factory, cloud, s3):
    server, outputs = s3
    stage = 'mkdir -p "$VL_OUT/a" && echo step1 > "$VL_OUT/a/ckpt.txt" && echo wrote && sleep 600'
    max_s = 40  # long enough for the instance to start on a loaded machine; the test waits it out
    life, outputs = {"max_hours": max_s / 3600}, {**outputs, "final_sync_timeout_s": 5}
    repo = repo_factory(stage_config([{"name": "a", "command": stage}], lifecycle=life, outputs=outputs))
    lid = detach(repo, cloud, {})
    (inst,) = cloud.cloud.instances.values()
    assert wait_for(lambda: inst.status == "destroyed", max_s + 60), inst.status
    deadline = json.loads(run_cli(["status", lid, "--json"], cwd=repo, env=cloud_env(cloud)).stdout)["deadline"]
    assert inst.ended_at <= deadline + 1, (inst.ended_at, deadline)  # gone by the deadline, final sync included
    bucket = outputs["url"].split("/")[2]
    assert server.read(bucket, f"runs/{lid}/out/a/ckpt.txt") == b"step1\n"
    result = json.loads(server.read(bucket, f"runs/{lid}/result.json"))
    assert result["end_reason"] == "deadline" and result["failed_stage"] == "a" and result["outputs"] == "complete", result
    row = status_of(repo, lid, cloud_env(cloud))
    assert row["end_reason"] == "deadline reached (lifecycle.max_hours): destroyed by the in-instance watchdog", row


RESUME_PROFILE = {
    "device": "cpu",
    "checkpoint_every": 50,
    "data": {"nx": 16, "solver_nx": 32, "n_train": 8, "n_val": 2, "n_test": 2, "n_steps": 4, "dt": 0.05, "nu": 0.01, "seed": 0},
    "operator": {"modes": 4, "width": 8, "layers": 1, "iters": 3000, "batch": 8, "lr": 0.003},
    "eval": {"rollout_steps": 2, "n_test": 2, "baselines": False},
}


@pytest.mark.slow
def test_an_instance_destroyed_mid_stage_resumes_on_a_new_one_from_its_checkpoint(repo_factory, cloud, s3):
    """Finished stages are not run again, and the stage that was running continues from its last
    checkpoint in the store: the steps are counted."""
    server, outputs = s3
    train = 'python -m ups.train --config "$VL_CONFIG" --profile "$VL_PROFILE" --stage operator --out "$VL_OUT"'
    stages = [{"name": "prep", "command": 'echo once >> "$VL_OUT/prep.txt"'}, {"name": "operator", "command": train}]
    cfg = stage_config(
        stages, outputs={**outputs, "sync_every_minutes": 0.01}, train={"profile": "tiny", "profiles": {"tiny": RESUME_PROFILE}}
    )
    repo = repo_factory(cfg)
    bucket = outputs["url"].split("/")[2]
    lid = detach(repo, cloud, {})
    (first,) = cloud.cloud.instances.values()
    partial = f"runs/{lid}/out/partial/operator.pt"
    assert wait_for(lambda: partial in server.keys(bucket, f"runs/{lid}/") or first.status == "destroyed", 600)
    assert first.status == "running", "the stage ended before a checkpoint reached the store"
    cloud.cloud.destroy(first.id, by="test: the host went away")  # from outside, mid-stage
    assert run_cli(["status", lid, "--json"], cwd=repo, env=cloud_env(cloud)).returncode == 0  # settles it

    p = run_cli(["--resume", lid, "--yes", "--follow"], cwd=repo, env=cloud_env(cloud), timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "stage 1/2 prep: already done, skipped" in p.stdout
    assert "operator: resuming at step" in p.stdout
    second = max(cloud.cloud.instances.values(), key=lambda i: i.id)
    assert second.id != first.id and second.destroyed_by == "instance"
    assert server.read(bucket, f"runs/{lid}/out/prep.txt") == b"once\n"  # prep ran on the first instance only
    result = json.loads(server.read(bucket, f"runs/{lid}/out/operator/result.json"))
    assert result["resumed_from_step"] > 0 and result["resumed_from_step"] % 50 == 0, result
    assert result["steps_run"] == 3000 - result["resumed_from_step"]  # not one step more than the rest
    done = json.loads(server.read(bucket, f"runs/{lid}/result.json"))
    assert done["attempt"] == 2 and done["end_reason"] == "success", done
    row = status_of(repo, lid, cloud_env(cloud))
    assert row["state"] == "destroyed" and row["end_reason"].startswith("completed"), row
    assert row["instance_id"] == second.id
    assert no_live_processes(cloud)


def test_check_refuses_a_directory_store_for_vast_and_s3_without_credentials(repo_factory, tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    repo = repo_factory(stage_config([{"name": "a", "command": "true"}], outputs={"url": (tmp_path / "s").as_uri()}))
    cfg = yaml.safe_load((repo / "configs" / "test.yaml").read_text())
    p = run_cli(["check", "--config", "configs/test.yaml"], cwd=repo, env={"VAST_API_KEY": "k"})
    assert p.returncode == 1 and "an instance on Vast cannot reach" in p.stderr, p.stderr
    cfg["outputs"] = {"url": "s3://my-bucket/x"}
    (repo / "configs" / "test.yaml").write_text(yaml.safe_dump(cfg))
    git(repo, "commit", "-qam", "s3")
    git(repo, "push", "-q")
    p = run_cli(["check", "--config", "configs/test.yaml"], cwd=repo, env={"VAST_API_KEY": "k"})
    assert p.returncode == 1 and "no S3 credentials" in p.stderr, p.stderr
    # a named profile counts as credentials
    (tmp_path / "creds").write_text("[team]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n")
    p = run_cli(
        ["check", "--config", "configs/test.yaml"],
        cwd=repo,
        env={"VAST_API_KEY": "k", "AWS_PROFILE": "team", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds")},
    )
    assert "no S3 credentials" not in p.stderr, p.stderr


def test_the_instance_installs_the_obstore_the_launcher_depends_on():
    import tomllib

    from conftest import PROJECT

    from vast_launch.store.objects import OBSTORE_PIN

    deps = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert OBSTORE_PIN in deps


def test_following_a_detached_launch_ends_with_its_last_lines_each_once(repo_factory, cloud, s3):
    """`logs --follow` ends when the instance is gone; what it wrote after the last fetch comes from the
    outputs store's copy of its log, and nothing is printed twice."""
    _, outputs = s3
    repo = repo_factory(stage_config([{"name": "a", "command": "echo 'first ± é'; sleep 4; echo 'last ± é'"}], outputs=outputs))
    lid = detach(repo, cloud, {})
    p = run_cli(["logs", lid, "--follow", "--via", "api"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    for line in ("first ± é", "last ± é", "stage 1/1 a: done", "result rc=0"):
        assert sum(line in ln for ln in p.stdout.splitlines()) == 1, (line, p.stdout)
    assert gone(cloud)
