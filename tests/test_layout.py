"""The separation DESIGN.md asks for, checked rather than hoped for."""

import re
import subprocess
import sys

from conftest import PROJECT


def test_cli_start_up_imports_no_torch_wandb_or_vastai():
    code = "import sys, vast_launch.cli; print(sorted(m for m in ('torch', 'wandb', 'vastai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ups_never_imports_the_launcher_and_launcher_never_imports_torch():
    for path in (PROJECT / "src" / "ups").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+vast_launch", path.read_text(), re.M), path
    for path in (PROJECT / "vast_launch").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+torch\b", text, re.M), path
        # wandb only inside the functions that talk to W&B (collector, cost sync), never at import time
        assert not re.search(r"^(from|import)\s+wandb\b", text, re.M), path
