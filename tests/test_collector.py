"""The run-health collector: fakes of W&B public-API runs through the adapter (checked against the installed
wandb's classes), and real offline runs from ups."""

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from conftest import PROJECT, run_cli

from vast_launch.reports import collector
from vast_launch.reports.wandb_api import ApiRunSource, OfflineRunSource, record_from_api_run

NOW = 1_800_000_000.0
H = 3600.0


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeSummary:
    """A fake of `run.summary` (wandb's HTTPSummary): a crashed run can carry `_json_dict` as a JSON string."""

    def __init__(self, data, as_string=False):
        self._json_dict = json.dumps(data) if as_string else data


class FakeRun:
    """A fake with the attributes of `wandb.apis.public.Run` that the adapter reads."""

    def __init__(self, id, name, state, created, runtime, config=None, summary=None, sweep=None, summary_as_string=False, group="g"):
        self.id, self.name, self.state, self.created_at = id, name, state, iso(created)
        self.config = config or {}
        self.summary = FakeSummary({"_runtime": runtime, **(summary or {})}, summary_as_string)
        self.sweep_name, self.group, self.job_type, self.tags = sweep, group, "operator", []


class FakeApi:
    """A fake `wandb.Api`: answers `runs(path, filters=...)` as the server applies the filter; records each call."""

    def __init__(self, runs):
        self.all, self.calls = runs, []

    def runs(self, path, filters=None, order=None, per_page=50):
        self.calls.append({"path": path, "filters": filters, "order": order, "per_page": per_page})
        (after,) = [c["createdAt"]["$gte"] for c in filters["$or"] if "createdAt" in c]
        return iter([r for r in self.all if r.created_at >= after or r.state == "running"])


def test_the_fakes_have_the_shape_of_the_installed_wandb_classes():
    """A wandb upgrade that renames what the adapter reads breaks here, not in production."""
    import inspect

    from wandb.apis.public import Api, Run
    from wandb.apis.public import runs as runs_module
    from wandb.apis.public.summary import HTTPSummary

    fields = set(runs_module.RUN_FRAGMENT.split())  # Run exposes these through its attribute lookup

    def camel(name):
        head, *rest = name.split("_")
        return head + "".join(w.title() for w in rest)

    fake = fake_runs()[0]
    for name in vars(fake):
        assert isinstance(inspect.getattr_static(Run, name, None), property) or camel(name) in fields, name
    assert "_json_dict" in inspect.getsource(HTTPSummary)
    fake_params = set(inspect.signature(FakeApi.runs).parameters) - {"self"}
    assert fake_params <= set(inspect.signature(Api.runs).parameters)


def fake_runs():
    return [
        FakeRun("a", "burgers-operator-1", "finished", NOW - 2 * H, 1 * H, {"gpu.count": 4}),
        FakeRun("b", "burgers-operator-2", "failed", NOW - 3 * H, 0.5 * H, {"gpu.count": {"value": 2}}),
        FakeRun("c", "burgers-op.sweep-3", "finished", NOW - 4 * H, 2 * H, {"gpu.count": 1}),
        FakeRun(
            "d",
            "sweep-member",
            "crashed",
            NOW - 5 * H,
            1 * H,
            {"gpu.count": 1},
            sweep="sw1",
            summary={"overview/sps": 10.0},
            summary_as_string=True,
        ),
        FakeRun("e", "github.sky.main.abc", "finished", NOW - 6 * H, 1 * H, {"gpu.count": 8}, summary={"overview/sps": 1000.0}),
        FakeRun("f", "github.sky.main.def", "finished", NOW - 1 * H, 0.5 * H, {"gpu.count": 8}, summary={"overview/sps": 1200.0}),
        FakeRun(
            "g",
            "github.sky.main.ghi",
            "crashed",
            NOW - 2.5 * H,
            0.25 * H,
            {"gpu.count": 8},
            summary={"overview/sps": 50.0},
            summary_as_string=True,
        ),
        FakeRun("old", "burgers-old", "finished", NOW - 72 * H, 5 * H, {"gpu.count": 4}),
        FakeRun("live", "burgers-long", "running", NOW - 48 * H, 0, {"gpu.count": 2}),
    ]


def collect_recorded(window=24 * H, runs=None):
    api = FakeApi(runs or fake_runs())
    got = collector.collect(ApiRunSource("team/burgers", api=api), window, time_limit=30, clock=lambda: NOW)
    return got, api


def test_only_the_window_is_asked_for_and_counted():
    got, api = collect_recorded()
    (call,) = api.calls
    assert call["filters"] == {"$or": [{"createdAt": {"$gte": iso(NOW - 24 * H)}}, {"state": "running"}]}
    assert call["order"] == "-created_at"
    m = got.metrics
    assert got.runs_seen == 8  # "old" never left the server
    assert m["wandb.runs.active"] == 1
    assert m["wandb.runs.completed_24h"] == 4  # a, c, e, f
    assert m["wandb.runs.failed_24h"] == 3  # b, d (crashed), g (crashed)
    assert m["wandb.runs.total_recent"] == 8
    hours = [1, 0.5, 2, 1, 1, 0.5, 0.25]
    assert abs(m["wandb.training.avg_duration_hours"] - sum(hours) / len(hours)) < 1e-9
    week, _ = collect_recorded(window=7 * 24 * H)
    assert week.metrics["wandb.runs.completed_7d"] == 5


def test_gpu_hours_use_each_runs_logged_gpu_count():
    got, _ = collect_recorded()
    # a 1h x4, b 0.5h x2 (config value wrapped as the API returns it), c 2h x1, d 1h x1,
    # e 1h x8, f 0.5h x8, g 0.25h x8, and the running run's last 24 h x2.
    expected = 4 + 1 + 2 + 1 + 8 + 4 + 2 + 24 * 2
    assert abs(got.metrics["wandb.training.total_gpu_hours_24h"] - expected) < 1e-6
    assert got.metrics["wandb.training.runs_without_gpu_count"] == 0
    no_count = [FakeRun("x", "n", "finished", NOW - H, 2 * H)]
    got, _ = collect_recorded(runs=no_count)
    assert got.metrics["wandb.training.runs_without_gpu_count"] == 1


def test_crashed_runs_with_a_json_string_summary_are_parsed():
    run = FakeRun("d", "x", "crashed", NOW - H, 1.5 * H, summary={"overview/sps": 10.0}, summary_as_string=True)
    assert isinstance(run.summary._json_dict, str)
    rec = record_from_api_run(run)
    assert rec.summary["overview/sps"] == 10.0 and rec.duration_s == 1.5 * H and rec.state == "crashed"


def test_push_to_main_and_sweep_runs_are_classified():
    m = collect_recorded()[0].metrics
    assert m["wandb.push_to_main.runs"] == 3
    assert m["wandb.push_to_main.completed"] == 2 and m["wandb.push_to_main.failed"] == 1
    assert abs(m["wandb.push_to_main.success_rate"] - 2 / 3) < 1e-9
    assert abs(m["wandb.push_to_main.avg_duration_hours"] - (1 + 0.5 + 0.25) / 3) < 1e-9
    assert m["wandb.push_to_main.sps.latest"] == 1200.0  # newest by creation time
    assert m["wandb.push_to_main.sps.min"] == 50.0 and m["wandb.push_to_main.sps.max"] == 1200.0
    assert m["wandb.push_to_main.sps.median"] == 1000.0
    assert abs(m["wandb.push_to_main.sps.mean"] - 2250 / 3) < 1e-9
    assert m["wandb.sweep.runs"] == 2  # c by name (.sweep), d by its sweep
    assert m["wandb.sweep.completed"] == 1 and m["wandb.sweep.failed"] == 1 and m["wandb.sweep.success_rate"] == 0.5


def test_prometheus_text_is_accepted_by_prometheus_client():
    from prometheus_client.parser import text_string_to_metric_families

    got, _ = collect_recorded()
    text = collector.to_prometheus(got.metrics)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families) == len(got.metrics)
    assert families["wandb_runs_failed_24h"].type == "gauge"
    assert families["wandb_runs_failed_24h"].samples[0].value == 3
    assert families["wandb_push_to_main_sps_latest"].samples[0].value == 1200.0


class HangingSource:
    """Three runs, then a page request that never answers."""

    def __init__(self):
        self.release = threading.Event()

    def runs(self, created_after):
        yield from (record_from_api_run(r) for r in fake_runs()[:3])
        self.release.wait()


def test_the_time_bound_is_honoured_even_when_a_page_hangs():
    source = HangingSource()
    t0 = time.monotonic()
    got = collector.collect(source, 24 * H, time_limit=0.5, clock=lambda: NOW)
    elapsed = time.monotonic() - t0
    source.release.set()
    assert elapsed < 30.0  # the page never answers: without the bound this would wait forever
    assert got.partial and got.metrics["wandb.collector.partial"] == 1 and got.runs_seen == 3
    assert "partial" in got.notes[0]


@pytest.mark.slow
def test_offline_runs_written_by_ups_through_the_adapter(tmp_path):
    """Real wandb offline runs: a 2-GPU-visible operator stage and a stage that crashes."""
    config = str(PROJECT / "configs" / "burgers.yaml")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_RUN_GROUP="collector-test", CUDA_VISIBLE_DEVICES="0,1")
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "ups.train",
            "--config",
            config,
            "--profile",
            "smoke",
            "--out",
            str(tmp_path / "ok"),
            "--stage",
            "operator",
            "--set",
            "operator.iters=20",
            "--set",
            "data.n_train=16",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    crash = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys; from ups.utils.wandb_context import WandbContext\n"
                f"ctx = WandbContext({{'name': 'burgers', 'wandb': {{}}}}, 'operator', "
                f"run_dir={str(tmp_path / 'bad')!r}, quiet=True)\n"
                "ctx.__enter__(); ctx.log_training_metrics('operator', {'loss': 1.0}, 1)\n"
                "ctx.__exit__(RuntimeError, RuntimeError('boom'), None); sys.exit(1)"
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert crash.returncode == 1, crash.stderr[-2000:]
    now = time.time()
    runs = list(OfflineRunSource(tmp_path).runs(now - 3600))
    assert sorted(r.state for r in runs) == ["failed", "finished"], [(r.name, r.state) for r in runs]
    good = next(r for r in runs if r.state == "finished")
    assert good.group == "collector-test" and good.config["gpu.count"] == 2 and good.duration_s > 0
    got = collector.collect(OfflineRunSource(tmp_path), 3600, time_limit=60)
    assert got.metrics["wandb.runs.completed_1h"] == 1 and got.metrics["wandb.runs.failed_1h"] == 1
    gpu_h = got.metrics["wandb.training.total_gpu_hours_1h"]
    assert gpu_h >= 2 * good.duration_s / 3600 - 1e-9  # the logged count (2), not an assumed 1

    p = run_cli(["metrics", "--offline-dir", str(tmp_path), "--window", "1h", "--format", "prometheus"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "wandb_runs_completed_1h 1.0" in p.stdout


def test_metrics_bad_input_is_one_line(tmp_path):
    env = {"WANDB_PROJECT": "", "DD_API_KEY": ""}
    for args, needle in (
        (["--window", "soon", "--offline-dir", str(tmp_path)], "--window 'soon'"),
        (["--push", "datadog", "--offline-dir", str(tmp_path)], "DD_API_KEY"),
        (["--time-limit", "0", "--offline-dir", str(tmp_path)], "--time-limit"),
        ([], "no W&B project"),
    ):
        p = run_cli(["metrics", *args], cwd=tmp_path, env=env)
        assert p.returncode == 1 and needle in p.stderr and p.stderr.count("\n") == 1, (args, p.stderr)
