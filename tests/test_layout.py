"""The separation DESIGN.md asks for, checked rather than hoped for."""

import re
import subprocess
import sys

from conftest import BIN, PROJECT


def test_cli_start_up_imports_no_torch_wandb_or_vastai():
    code = "import sys, vast_launch.cli; print(sorted(m for m in ('torch', 'wandb', 'vastai', 'sqlite3') if m in sys.modules))"
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


def test_status_check_and_help_import_nothing_heavy(tmp_path):
    """`--help`, `status` and `check` answer without the vastai SDK, wandb, torch or rich tables."""
    code = (
        "import sys\nfrom vast_launch.cli import main\n"
        "try:\n    main(sys.argv[1:], standalone_mode=False)\nexcept BaseException:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'wandb', 'vastai', 'rich.table') if m in sys.modules))"
    )
    env = {"VAST_LAUNCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args in (["--help"], ["status"], ["check", "--config", "configs/burgers.yaml"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=PROJECT, env=env).stdout
        assert "HEAVY []" in out, (args, out[-500:])


def test_every_command_help_has_an_example():
    from click.testing import CliRunner

    from vast_launch.cli import main

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield prefix + [name], cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])

    for path, cmd in walk(main, []):
        if hasattr(cmd, "commands"):
            continue
        text = CliRunner().invoke(main, [*path, "--help"]).output
        assert "Example" in text, f"`vast-launch {' '.join(path)} --help` has no example"


def test_shell_completion_script_is_generated():
    import os

    env = {**os.environ, "_VAST_LAUNCH_COMPLETE": "bash_source"}
    out = subprocess.run([str(BIN / "vast-launch")], env=env, capture_output=True, text=True).stdout
    assert "complete -o nosort -F _vast_launch_completion vast-launch" in out


def _package_imports(path, module, top_level_only):
    """The vast_launch modules that `module` imports (relative or absolute)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else []
            else:
                target, names = node.module or "", []
            for name in [target, *names]:
                if name.startswith("vast_launch"):
                    found.add(name)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vast_launch"))
    return found


def _modules():
    root = PROJECT / "vast_launch"
    for path in root.rglob("*.py"):
        rel = path.relative_to(PROJECT).with_suffix("")
        parts = rel.parts[:-1] if path.name == "__init__.py" else rel.parts
        yield ".".join(parts), path


def test_no_import_cycles_at_module_level():
    modules = dict(_modules())
    graph = {m: {i for i in _package_imports(p, m, True) if i in modules and i != m} for m, p in modules.items()}
    _assert_acyclic(graph)


def test_the_local_cloud_imports_nothing_from_the_launcher():
    """It emulates Vast: it must not share code (and so assumptions) with the client it is testing."""
    for module, path in _modules():
        if module.startswith("vast_launch.localcloud"):
            outside = {i for i in _package_imports(path, module, False) if not i.startswith("vast_launch.localcloud")}
            assert not outside, (module, outside)


BACKENDS = ("vast_launch.vast", "vast_launch.slurm", "vast_launch.localcloud")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles_even_inside_functions():
    """A function-level import hides a cycle from Python, not from the reader (ledger <-> cost was one)."""
    modules = dict(_modules())
    graph = {
        m: {i for i in _package_imports(p, m, False) if i in modules and i != m and not _under(i, "vast_launch.commands")}
        for m, p in modules.items()
        if not _under(m, "vast_launch.commands") and m != "vast_launch.cli"
    }
    _assert_acyclic(graph)


def test_backends_do_not_import_each_other_and_the_core_imports_none():
    """One folder per target: vast/, slurm/, localcloud/. The core (the top-level modules, commands/, reports/,
    store/, targets/) serves them all and imports none of them; the registry (targets/__init__.py) names
    them as data and imports each only when asked; only cli.py puts a backend's own command on the group."""
    for module, path in _modules():
        if module == "vast_launch.cli":
            continue
        imported = _package_imports(path, module, False)
        own = next((b for b in BACKENDS if _under(module, b)), None)
        wrong = {i for i in imported for b in BACKENDS if _under(i, b) and b != own and b not in MAY_USE.get(own, ())}
        assert not wrong, f"{module} imports {sorted(wrong)}"


# The local target is Vast's launch path against the embedded emulator, which it starts in-process.
MAY_USE = {"vast_launch.vast": ("vast_launch.localcloud",)}
TARGET_NAMES = {"vast", "local", "slurm"}
# Vast's own instance fields: the core decides on the neutral statuses (states.py) only.
VAST_STATUS_FIELDS = {"actual_status", "intended_status", "cur_state", "next_state"}


def _core_modules():
    for module, path in _modules():
        if any(_under(module, b) for b in BACKENDS) or module in ("vast_launch.cli", "vast_launch.targets"):
            continue
        yield module, path


def _strings_and_names(path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Name):
            yield node.id


def test_commands_and_the_core_never_name_a_target():
    """They ask the registry (targets/) for a target and call it: a new target is a new package, not a
    new branch in every command. (The config names its `slurm:` section: a key of the file, not a branch.)"""
    for module, path in _core_modules():
        if module.startswith("vast_launch.config"):
            continue
        named = TARGET_NAMES & set(_strings_and_names(path))
        assert not named, f"{module} names target(s) {sorted(named)}: ask targets.get()/of_row() instead"


def test_the_core_reads_no_vast_status_field():
    for module, path in _core_modules():
        named = VAST_STATUS_FIELDS & set(_strings_and_names(path))
        assert not named, f"{module} reads Vast's {sorted(named)}: use Instance.status (states.py)"


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(PROJECT)): n for p in (PROJECT / "vast_launch").rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these: {long}"


def _assert_acyclic(graph: dict) -> None:
    """Depth-first search of an import graph; an edge back to a module still open is a cycle."""
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
