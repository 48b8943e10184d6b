"""Read an offline `run-<id>.wandb` file: what a W&B chart of that run would show.

The file is a LevelDB-style log: a 7-byte header (':W&B', 2-byte magic, 1-byte version), then
32 KiB blocks of records, each with a 7-byte header (CRC32 4, length 2, type 1) and typed
FULL(1)/FIRST(2)/MIDDLE(3)/LAST(4); the payloads are `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: str | Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a .wandb file")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        block_left = BLOCK - (pos % BLOCK)
        if block_left < HEADER:  # trailer padding
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            pos += BLOCK - (pos % BLOCK) if pos % BLOCK else 0
            continue
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        else:
            raise ValueError(f"bad record type {kind} at {pos}")
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(pending)
        pending = b""
        yield rec


@dataclass
class OfflineRun:
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    metrics: list = field(default_factory=list)  # (name or glob, step_metric)
    summary: dict = field(default_factory=dict)
    finished: bool = False  # the exit record is written last
    exit_code: int = 0
    run_id: str = ""
    start_time: float = 0.0  # epoch seconds
    runtime: float = 0.0  # seconds, from the exit record or the last history row
    sweep_id: str = ""
    tags: list = field(default_factory=list)


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: str | Path) -> OfflineRun:
    run = OfflineRun()
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.name = rec.run.run_group, rec.run.job_type, rec.run.display_name
            run.run_id, run.sweep_id, run.tags = rec.run.run_id, rec.run.sweep_id, list(rec.run.tags)
            run.start_time = rec.run.start_time.seconds + rec.run.start_time.nanos / 1e9
            for item in rec.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "metric":
            run.metrics.append((rec.metric.name or rec.metric.glob_name, rec.metric.step_metric))
        elif kind == "exit":
            run.finished, run.exit_code, run.runtime = True, rec.exit.exit_code, float(rec.exit.runtime)
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
    return run


def find_runs(root: str | Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("run-*.wandb") if "latest-run" not in p.parts)
