"""Run the vast-launch CLI of another checkout (an earlier commit, for a baseline measured in the same run)
with this environment's packages: `python benchmarks/run_checkout.py CHECKOUT [ARGS...]`.

This environment's editable install of the current checkout would win over `PYTHONPATH`; it is taken off
the import path first."""

from __future__ import annotations

import sys


def main() -> None:
    checkout, args = sys.argv[1], sys.argv[2:]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", type(f).__name__).lower()]
    sys.path.insert(0, checkout)
    from vast_launch.cli import main as cli

    sys.argv = ["vast-launch", *args]
    cli()


if __name__ == "__main__":
    main()
