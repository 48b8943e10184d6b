"""A training-like stage for the interruptible soak (copied into the soak's repository and run by its config).

    python3 soak_train_stage.py STEPS STEP_SECONDS EVERY

Runs STEPS steps of STEP_SECONDS each, resuming from the checkpoint it finds in $VL_OUT (pulled from the outputs
store by a new instance of the launch). Every EVERY steps it writes the checkpoint and asks the instance's agent to
sync it to the store at once. Each step it runs is appended to $VL_W/steps.log, on this instance's disk only: the
steps an interrupted instance ran past its last stored checkpoint, run again elsewhere, are the work lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def ask_for_sync(workdir: Path) -> None:
    """One line to the agent's fifo: it syncs $VL_OUT to the store in a thread of its own."""
    try:
        fd = os.open(workdir / ".vl" / "agent.fifo", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no agent (no store): the periodic and final syncs are all there is
    try:
        os.write(fd, b"sync\n")
    finally:
        os.close(fd)


def main() -> int:
    steps, step_s, every = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    out, workdir = Path(os.environ["VL_OUT"]), Path(os.environ.get("VL_W", "."))
    ckpt = out / "ckpt.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    print(f"train: from step {step}", flush=True)
    with open(workdir / "steps.log", "a") as log:
        while step < steps:
            time.sleep(step_s)
            step += 1
            log.write(f"{step}\n")
            log.flush()
            if step % every == 0:
                tmp = out / "ckpt.json.tmp"
                tmp.write_text(json.dumps({"step": step}))
                os.replace(tmp, ckpt)
                ask_for_sync(workdir)
    print(f"train: done at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
