"""The launcher's import graph in numbers: modules, edges (module-level and inside functions), cycles, and
which layer imports which. Run from the repository root: `python scripts/import_graph.py [--edges]`."""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vast_launch"
LAYERS = (
    "vast_launch.cli",
    "vast_launch.commands",
    "vast_launch.targets",
    "vast_launch.vast",
    "vast_launch.slurm",
    "vast_launch.localcloud",
    "vast_launch.reports",
    "vast_launch.store",
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if path.name == "__init__.py" else rel.parts
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                names = [] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                target, names = node.module or "", []
            found.update(n for n in [target, *names] if n.startswith(PACKAGE))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
    return found


def graph(top_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports(m, p, top_level_only) if i in mods and i != m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (each reported once, from where it was entered)."""
    state: dict[str, str] = {}
    found = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(g.get(m, ())):
            if state.get(n) == "open":
                found.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return found


def layer(module: str) -> str:
    return next((lay.split(".")[-1] for lay in LAYERS if module == lay or module.startswith(lay + ".")), "core")


def main() -> None:
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--edges", action="store_true", help="also list every edge between layers")
    ap.add_argument("--root", type=Path, default=None, help="another checkout to measure (default: this one)")
    args = ap.parse_args()
    ROOT = (args.root or ROOT).resolve()
    top, every = graph(True), graph(False)
    lines = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    print(f"modules: {len(top)} ({sum(lines.values())} lines, median {sorted(lines.values())[len(lines) // 2]})")
    print(f"edges at module level: {sum(map(len, top.values()))}; with imports inside functions: {sum(map(len, every.values()))}")
    for name, g in (("module level", top), ("inside functions too", every)):
        found = cycles(g)
        print(f"cycles ({name}): {len(found)}" + "".join(f"\n  {' -> '.join(c)}" for c in found))
    between = Counter((layer(m), layer(i)) for m, deps in every.items() for i in deps if layer(m) != layer(i))
    print("between layers (importer -> imported: edges):")
    for (a, b), n in sorted(between.items()):
        print(f"  {a:<12} -> {b:<12} {n}")
    if args.edges:
        for m, deps in sorted(every.items()):
            for i in sorted(deps):
                print(f"{m} -> {i}")


if __name__ == "__main__":
    main()
