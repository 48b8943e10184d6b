"""The shell<->launcher contract: what the stage runner prints is what protocol.py parses.

The runner is taken from the rendered bootstrap (the bytes an instance runs), not from the source file.
"""

import subprocess

import pytest

from vast_launch.protocol import Outcome, parse_stage_line
from vast_launch.vast.onstart import OnstartSpec, render_onstart, unpack_bootstrap


def spec(stages, setup="true"):
    return OnstartSpec(
        launch_id="t-1",
        commit="0" * 40,
        repo="https://example.invalid/r.git",
        group="g",
        deadline=2_000_000_000,
        profile="smoke",
        config_path="c.yaml",
        stages=stages,
        setup=setup,
        auto_shutdown=True,
    )


def runner_from(bootstrap: str) -> str:
    return bootstrap.split("<<'VL_RUNNER'\n", 1)[1].split("\nVL_RUNNER\n", 1)[0]


def test_stage_runner_lines_parse_and_agree_with_its_files(tmp_path):
    _, bootstrap, _ = render_onstart(spec([("a", "echo A"), ("b", "exit 7"), ("c", "echo never")]))
    (tmp_path / "run_stages.sh").write_text(runner_from(bootstrap))
    (tmp_path / "stages.tsv").write_text("a\techo A\nb\texit 7\nc\techo never\n")
    p = subprocess.run(
        ["bash", str(tmp_path / "run_stages.sh")], env={"VL_W": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert p.returncode == 7
    events = [e for e in map(parse_stage_line, p.stdout.splitlines()) if e]
    assert [(e.name, e.phase, e.rc) for e in events] == [
        ("a", "start", None),
        ("a", "done", 0),
        ("b", "start", None),
        ("b", "failed", 7),
    ]
    times = [line.split() for line in (tmp_path / "stage_times").read_text().splitlines()]
    assert [(t[0], int(t[3])) for t in times] == [("a", 0), ("b", 7)]
    assert float(times[1][1]) == events[2].at and float(times[1][2]) == events[3].at
    assert (tmp_path / "failed_stage").read_text().strip() == "b"
    assert "never" not in p.stdout


@pytest.mark.parametrize(
    "line,rc,stage,signal",
    [
        ("[vast-launch] 12:00:00 result rc=0 failed_stage= at=1700000000.5", 0, "", ""),
        ("[vast-launch] 12:00:00 result rc=143 failed_stage=train at=1700000000.5 signal=TERM", 143, "train", "TERM"),
    ],
)
def test_result_lines(line, rc, stage, signal):
    out = Outcome()
    assert out.read_line(line)
    assert (out.rc, out.failed_stage, out.signal, out.result_at) == (rc, stage, signal, 1700000000.5)


def test_outcomes_map_to_reasons_and_exit_codes():
    watchdog = Outcome(watchdog="deadline")
    assert watchdog.exit_code() == 124
    assert watchdog.end_reason() == "deadline reached (lifecycle.max_hours): destroyed by the in-instance watchdog"
    assert Outcome().exit_code() == 3
    failed = Outcome(rc=7, failed_stage="b")
    assert failed.exit_code() == 7 and failed.end_reason().startswith("failed in stage b (exit 7)")
    done_then_idle = Outcome(rc=0, watchdog="idle")
    assert done_then_idle.exit_code() == 0 and done_then_idle.end_reason().startswith("completed")


def test_watchdog_lines_are_recognised():
    out = Outcome()
    out.read_line("[vast-launch] 12:00:00 budget reached: destroying")
    assert out.watchdog == "budget"
    out.read_line("[vast-launch] 12:00:00 idle for 180 s: destroying")
    assert out.watchdog == "idle"


def test_onstart_fits_with_a_long_setup_and_many_stages():
    stages = [(f"stage{i}", f'python -m my_project.train --stage {i} --out "$VL_OUT" --seed {i}') for i in range(10)]
    setup = " && ".join(f"pip install -q pkg{i}=={i}.{i * 7 % 10}.{i * 3 % 10}" for i in range(90))[:2000]
    onstart, bootstrap, env = render_onstart(spec(stages, setup=setup))
    assert len(setup) == 2000 and len(bootstrap) > 4000 >= len(onstart)
    assert all(len(k) + len(v) <= 256 for k, v in env.items()) and unpack_bootstrap(env) == bootstrap
    assert "@@" not in bootstrap


def test_values_cannot_create_placeholders():
    _, bootstrap, _ = render_onstart(spec([("a", "echo @@SETUP@@")], setup="echo real-setup"))
    assert bootstrap.count("echo real-setup") == 1 and "echo @@SETUP@@" in bootstrap


NASTY = "a b'c\"d$(touch pwned)`touch pwned2`;e|f&g\\h*?[x]{y}~!#%@@GROUP@@\n touch pwned3 #"


def nasty_spec():
    return OnstartSpec(
        launch_id="t-20261124-080000-ab12",
        commit="c0ffee" * 6 + "beef",
        repo="https://h/" + NASTY + ".git",
        group="g " + NASTY,
        deadline=2_000_000_000,
        profile="p " + NASTY,
        config_path="c " + NASTY,
        stages=[("a", "echo a")],
        setup="true",
        auto_shutdown=True,
        archive="https://h/" + NASTY,
    )


def test_values_full_of_shell_metacharacters_reach_the_instance_as_data(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    s = nasty_spec()
    _, bootstrap, _ = render_onstart(s)
    prelude = bootstrap.split("\nW=", 1)[0]  # the assignments, before anything runs
    shown = subprocess.run(
        ["bash", "-c", prelude + '\nprintf "%s\\0" "$L" "$SHA" "$REPO" "$ARCHIVE" "$WANDB_RUN_GROUP" "$VL_PROFILE" "$VL_CONFIG"'],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")[:-1]
    assert shown == [s.launch_id, s.commit, s.repo, s.archive, s.group, s.profile, s.config_path]
    assert list(cwd.iterdir()) == []  # nothing was executed


def test_a_launch_id_that_is_not_a_slug_is_refused():
    bad = nasty_spec()
    bad.launch_id = "t-1\ntouch pwned"
    with pytest.raises(RuntimeError, match="not a slug"):
        render_onstart(bad)


def test_rendered_bootstrap_matches_the_reviewed_golden_file():
    """The exact bytes an instance runs for a config full of metacharacters. After a deliberate change to
    the bootstrap, review the diff and refresh with VL_UPDATE_GOLDEN=1."""
    import os
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "bootstrap_metacharacters.sh"
    _, bootstrap, _ = render_onstart(nasty_spec())
    if os.environ.get("VL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(bootstrap)
    assert bootstrap == golden.read_text(), f"the rendered bootstrap differs from {golden}"


def test_the_work_dir_note_in_tmp_is_never_written_through_a_planted_link(tmp_path):
    import os
    import uuid

    _, bootstrap, _ = render_onstart(spec([("a", "echo a")]))
    (line,) = [x for x in bootstrap.splitlines() if '/tmp/vl-$L.dir"' in x and not x.startswith("#")]
    lid = "t-" + uuid.uuid4().hex
    planted = f"/tmp/vl-{lid}.dir"
    os.symlink(tmp_path / "victim", planted)
    try:
        subprocess.run(["bash", "-c", f"L={lid} W=/somewhere; {line}"])
        assert not (tmp_path / "victim").exists()
    finally:
        os.unlink(planted)


def test_labels_carry_workspace_deadline_and_follow_lease_and_old_labels_still_parse():
    from vast_launch.protocol import Label, label_for, launch_id_of, parse_label

    text = label_for("t-1", "alice-laptop-ab12cd", 2_000_000_000.7)
    assert text == "vast-launch:t-1 ws=alice-laptop-ab12cd dl=2000000000"
    lab = parse_label(text)
    lab.followed_until, lab.result_seen = 123.0, True
    assert parse_label(lab.text()) == Label("t-1", "alice-laptop-ab12cd", 2_000_000_000, 123.0, True)
    assert launch_id_of("vast-launch:t-1 result-seen") == "t-1"  # labels written before these fields
    assert parse_label("vast-launch:t-1").workspace is None
    assert parse_label("someone-else:t-1") is None and parse_label("vast-launch:") is None
    assert parse_label("vast-launch:t-1 dl=abc").deadline is None  # a field that does not parse is left out


def _workdir(tmp_path, result=None, watchdog=None, current=None, times=()):
    w = tmp_path / "w"
    w.mkdir()
    if result:
        (w / "result").write_text(result)
    if watchdog:
        (w / "deadline_hit").write_text(watchdog)
    if current:
        (w / "current_stage").write_text(current)
    (w / "stage_times").write_text("".join(f"{n} {a} {b} {rc}\n" for n, a, b, rc in times))
    return w


@pytest.mark.parametrize(
    "files,ended_by,reason,code,stage",
    [
        ({"result": "rc=0 failed_stage= signal= t=5", "times": [("a", 1, 2, 0)]}, "done", "success", 0, ""),
        ({"result": "rc=7 failed_stage=b signal= t=5"}, "done", "stage_failure", 7, "b"),
        ({"result": "rc=143 failed_stage=b signal=TERM t=5"}, "done", "signal", 143, "b"),
        ({"current": "b\n", "watchdog": "deadline"}, "deadline", "deadline", 124, "b"),
        ({"current": "b\n", "watchdog": "budget"}, "budget", "budget", 124, "b"),
        ({"result": "rc=0 failed_stage= signal= t=5", "watchdog": "idle"}, "idle", "success", 0, ""),
    ],
)
def test_result_json_says_how_the_run_ended_and_reads_back_the_same(tmp_path, files, ended_by, reason, code, stage):
    from vast_launch.protocol import result_document

    w = _workdir(tmp_path, files.get("result"), files.get("watchdog"), files.get("current"), files.get("times", ()))
    doc = result_document(w, ended_by, {"launch_id": "t-1", "commit": "c", "attempt": 2, "instance_id": 9}, "syncing")
    assert (doc["end_reason"], doc["exit_code"], doc["failed_stage"], doc["attempt"]) == (reason, code, stage, 2)
    back = Outcome.from_result(doc)
    assert back.exit_code() == code and back.end_code() == reason
    if files.get("times"):
        assert doc["stage_times"] == [{"name": "a", "start": 1.0, "end": 2.0, "rc": 0}]


def test_finished_stages_of_an_earlier_instance_are_skipped_from_its_events(tmp_path):
    """On a new instance of a launch, the events pulled from the outputs store say which stages finished."""
    _, bootstrap, _ = render_onstart(spec([("a", "echo A"), ("b", "echo B")]))
    (tmp_path / "run_stages.sh").write_text(runner_from(bootstrap))
    (tmp_path / "stages.tsv").write_text("a\techo A\nb\techo B\n")
    (tmp_path / "events").write_text("[vast-launch] stage 1/2 a: start at=1.0\n[vast-launch] stage 1/2 a: done at=2.0 start=1.0\n")
    p = subprocess.run(
        ["bash", str(tmp_path / "run_stages.sh")], env={"VL_W": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert "stage 1/2 a: already done, skipped" in p.stdout and "\nA\n" not in p.stdout and "B\n" in p.stdout
    assert (tmp_path / "events").read_text().count(": done at=") == 2  # b's end is recorded for the next one


def test_the_instance_helpers_are_self_contained():
    """What the bootstrap ships (SHIPPED) runs with the image's bare Python: the standard library, obstore,
    and each other; each parses after the docstrings are stripped, and none holds the heredoc's end line."""
    import ast
    import sys

    from vast_launch.vast.onstart import PACKAGE, SHIPPED, shipped_source

    shipped = {"vast_launch." + rel[:-3].replace("/", ".") for rel in SHIPPED}
    for rel in SHIPPED:
        source = shipped_source(PACKAGE / rel)
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in shipped else node.module for a in node.names]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "obstore" or name in shipped or name == "__future__", (rel, name)
        assert "VL_PY" not in source.splitlines()
