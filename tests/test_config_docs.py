"""The config is documented from its models: the schema, the reference page and `init`'s starter config."""

import json
import subprocess

import jsonschema
import pytest
import yaml
from conftest import PROJECT, git, run_cli

from vast_launch.config import LaunchConfig, load_config
from vast_launch.config_docs import json_schema, reference_markdown
from vast_launch.errors import ConfigInvalid


def _keys(model, prefix=""):
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        yield prefix + name
        sub = field.annotation
        inner = getattr(sub, "__args__", (sub,))
        for kind in inner:
            if isinstance(kind, type) and issubclass(kind, LaunchConfig.__mro__[1]):
                yield from _keys(kind, prefix + name + ("[]." if name == "stages" else "."))


def test_the_reference_page_is_current_and_names_every_key_with_a_meaning():
    page = (PROJECT / "docs" / "config.md").read_text()
    assert page == reference_markdown(), "docs/config.md is stale: vast-launch config-schema --markdown > docs/config.md"
    rows = {line.split("|")[1].strip().strip("`"): line for line in page.splitlines() if line.startswith("| `")}
    keys = list(_keys(LaunchConfig))
    assert len(keys) > 35
    for key in keys:
        assert key in rows, key
        assert rows[key].rstrip(" |").split("|")[-1].strip(), f"{key} has no meaning in the reference"


def test_the_schema_validates_the_shipped_config_and_refuses_a_typo():
    schema = json_schema()
    p = run_cli(["config-schema"], cwd=PROJECT)
    assert p.returncode == 0 and json.loads(p.stdout) == schema
    shipped = yaml.safe_load((PROJECT / "configs" / "burgers.yaml").read_text())
    jsonschema.validate(shipped, schema)
    shipped["resources"]["max_dhp"] = 1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(shipped, schema)


def test_validation_lists_every_problem_each_naming_its_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresources: {num_gpus: 0, colour: red}\nlifecycle: {max_hours: 0}\nstages: [{name: 'bad name'}]\n")
    with pytest.raises(ConfigInvalid) as err:
        load_config(bad)
    assert [line.split(": ")[1] for line in err.value.problems] == [
        "resources.num_gpus",
        "unknown key 'resources.colour' (check the spelling; every key",
        "lifecycle.max_hours",
        "stages.0.name",
    ], err.value.problems
    p = run_cli(["check", "--config", str(bad)], cwd=tmp_path)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 4, p.stderr
    assert "Traceback" not in p.stderr and all(line.startswith("check failed: ") for line in p.stderr.splitlines())


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    repo = tmp_path / "proj"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "train.py").write_text("print('hi')\n")
    (repo / "requirements.txt").write_text("numpy\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    git(repo, "remote", "add", "origin", "https://user:s3cr3t-init@example.com/o/proj.git")
    p = run_cli(["init"], cwd=repo / "scripts")  # from a subdirectory: written at the root
    assert p.returncode == 0, p.stderr
    text = (repo / "vast-launch.yaml").read_text()
    cfg = load_config(repo / "vast-launch.yaml")
    assert cfg.stages[0].command == "python3 scripts/train.py"
    assert cfg.code.setup == "pip install -q -r requirements.txt" and cfg.lifecycle.auto_shutdown
    assert "https://example.com/o/proj.git" in text and "s3cr3t-init" not in text
    assert text.count("\n#") + text.count("  #") >= 10  # commented for a reader
    again = run_cli(["init"], cwd=repo)
    assert again.returncode == 1 and "exists: pass --force" in again.stderr
    assert run_cli(["init"], cwd=tmp_path).stderr.startswith("error: init needs a git repository")
