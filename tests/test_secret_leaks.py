"""Every secret, set to a distinctive value, run through every command: none appears, raw or base64, in any
output, in the state dir, in the kept run outputs or W&B files, or in the instance's work dir."""

import base64
import json
import secrets

from conftest import cloud_env, git, run_cli, stage_config

# made at run time: values written in this file would be found in every clone of it
SECRETS = {
    name: f"{name.lower()}-{secrets.token_hex(16)}"
    for name in (
        "WANDB_API_KEY",
        "VAST_LAUNCH_GIT_TOKEN",
        "DD_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    )
}
URL_PASSWORD = f"urlpassword{secrets.token_hex(8)}"
# a stage that logs offline to W&B, writes outputs, and prints its environment's names (not values)
STAGE = (
    "python3 -c \"import os, wandb; r = wandb.init(project='p', mode='offline', dir=os.environ['VL_OUT']); "
    "r.log({'loss': 1.0}); r.finish(); open(os.path.join(os.environ['VL_OUT'], 'out.txt'), 'w').write('ok')\"; "
    "env | cut -d= -f1 | sort | tr '\\n' ' '"
)


def _forms(secret: str) -> list[bytes]:
    """The raw value and its base64 at each of the three alignments it can have inside a longer blob."""
    raw = secret.encode()
    forms = [raw]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw)
        forms.append(enc[(4 * k + 2) // 3 + 1 : -4])
    return forms


def _leaks(blobs: dict, values: dict) -> list[str]:
    found = []
    for where, data in blobs.items():
        for name, value in values.items():
            if any(form in data for form in _forms(value)):
                found.append(f"{name} in {where}")
    return found


def test_no_secret_leaks_from_any_command(repo_factory, cloud, tmp_path, s3_server):
    bucket = s3_server.bucket("vl-leaks-" + secrets.token_hex(3))  # moto takes any key: these are the sentinels
    outputs = {"url": f"{bucket}/runs", "endpoint_url": s3_server.endpoint}
    repo = repo_factory(
        stage_config(
            [{"name": "leakcheck", "command": STAGE}],
            code={"repo": f"https://user:{URL_PASSWORD}@127.0.0.1:9/o/r.git"},
            outputs=outputs,
        )
    )
    # the remote the check asks is the real one; the URL the instance gets carries a password to strip
    values = {**SECRETS, "VAST_API_KEY": cloud.api_key, "URL_PASSWORD": URL_PASSWORD}
    env = {**cloud_env(cloud), **SECRETS}
    outputs = {}

    def run(*argv, cwd=repo):
        p = run_cli(list(argv), cwd=cwd, env=env, timeout=900)
        outputs[" ".join(argv)] = (p.stdout + p.stderr).encode()
        return p

    run("check", "--config", "configs/test.yaml", "--json")
    run("--config", "configs/test.yaml", "--dry-run")
    run("offers", "--config", "configs/test.yaml")
    # the instance cannot clone from a URL nothing serves: the launch fails in setup, after every secret moved
    run("--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow")
    cfg = (
        (repo / "configs" / "test.yaml")
        .read_text()
        .replace(f"https://user:{URL_PASSWORD}@127.0.0.1:9/o/r.git", f"{repo.parent / (repo.name + '-remote.git')}")
    )
    (repo / "configs" / "test.yaml").write_text(cfg)
    git(repo, "commit", "-qam", "a reachable repo")
    git(repo, "push", "-q")
    good = run("--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow")
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    stage_env = next(ln for ln in good.stdout.splitlines() if "VL_OUT" in ln and "PATH" in ln)
    # least exposure: the stage's environment holds none of the token, the instance key, the store's keys
    assert not {"VL_GIT_TOKEN", "CONTAINER_API_KEY", "AWS_SECRET_ACCESS_KEY", "VL_BOOT_00"} & set(stage_env.split()), stage_env
    assert len(cloud.cloud.instances) == 2
    values.update({f"instance key {i.id}": i.api_key for i in cloud.cloud.instances.values()})
    (row,) = [
        r for r in json.loads(run("status", "--json").stdout) if r["state"] == "destroyed" and r["end_reason"].startswith("completed")
    ]
    lid = row["launch_id"]
    for argv in (
        ["status"],
        ["logs", lid],
        ["pull", lid, "--to", str(tmp_path / "pulled")],
        ["report", lid, "--json"],
        ["cost"],
        ["cost", "--format", "json"],
        ["reap", "--dry-run"],
        ["down", lid, "--yes"],
        ["metrics", "--offline-dir", str(tmp_path / "home")],
        ["init", "--out", str(tmp_path / "init.yaml")],
    ):
        run(*argv)

    files = {}
    kept = []
    for root in (tmp_path / "home", tmp_path / "cloud", tmp_path / "pulled", repo):
        for path in root.rglob("*"):
            # .vast_api_key is the platform's: Vast writes the instance key to /root/.vast_api_key itself;
            # .vl/secrets/ is where the bootstrap keeps the secrets it took out of the environment (0600)
            if path.parent.name == "secrets" and path.parent.parent.name == ".vl":
                kept.append(path)
            elif path.is_file() and ".git/objects" not in str(path) and path.name != ".vast_api_key":
                files[str(path)] = path.read_bytes()
    assert kept and all(p.stat().st_mode & 0o077 == 0 for p in kept)
    assert "VL_GIT_TOKEN" not in {p.name for p in kept}  # the token is gone once the code is fetched
    assert len(files) > 20 and any(p.endswith(".wandb") for p in files), sorted(files)[:20]
    assert any("instance-" in p for p in files)  # the instance's work dir is among what was searched
    assert _leaks(outputs, values) == []
    assert _leaks(files, values) == []
