"""`vast-launch status` (table and --json) on generated ledgers of 10k, 100k and 1M launches: wall time and
peak memory of this checkout's CLI against a baseline checkout's, interleaved, on the same ledger.
Usage: python benchmarks/status_report.py --baseline CHECKOUT [--sizes 10000,100000] [--repeat 3] [--keep DIR]
(the same --keep as cost_report.py reuses its ledgers)."""

from __future__ import annotations

import argparse

import ledger_bench
from cost_report import generate_ledger

COMMANDS = [["status"], ["status", "--json"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ledger_bench.add_arguments(ap, default_sizes="10000,100000,1000000")
    ledger_bench.run(ap.parse_args(), COMMANDS, generate_ledger)


if __name__ == "__main__":
    main()
