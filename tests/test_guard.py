"""The leak guard in conftest.py: a test that leaves a process behind fails, and the process is ended."""

import time
from pathlib import Path

pytest_plugins = ["pytester"]

LEAKY_TEST = """
import os, subprocess

def test_leaks_a_process(tmp_path):
    # An "instance" that outlives its test, as a launcher killed mid-run would leave it.
    p = subprocess.Popen(["sleep", "300"], env={**os.environ, "DATA_DIRECTORY": str(tmp_path / "instance")},
                         start_new_session=True)
    (tmp_path.parent.parent / "leaked.pid").write_text(str(p.pid))
"""


def test_the_guard_fails_a_test_that_leaks_a_process_and_ends_it(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--basetemp={pytester.path / 'tmp'}")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*processes outlived the test (ended now)*", "*sleep 300*"])
    pid = int((pytester.path / "leaked.pid").read_text())
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
