"""Launch states, and the provider-neutral instance statuses every backend maps its own onto.

A launch row's `state` is the last state the ledger recorded: a phase of the launch (`searching`,
`creating`, ...), its instance's status (one of INSTANCE_STATUSES), or how the launch ended. Each backend
maps its cloud's names onto the statuses here (Vast's in `vast/instances.py`); the core decides only on
these. SLURM's job states are the scheduler's own and live in `slurm/jobs.py`.
"""

# How a launch ends (`Ledger.finish`): a row in one of these is never acted on again.
TERMINAL = frozenset({"destroyed", "failed", "aborted", "cancelled", "completed"})
# Ended by a destroy this side recorded (or by an abort): following must not write another end over it.
ENDED_BY_DESTROY = frozenset({"destroyed", "aborted"})
# A timeline event after which nothing bills: an end, or the instance vanished (`gone`).
BILLING_ENDS = TERMINAL | {"gone"}

# What an instance is doing, whatever its cloud calls it.
PENDING = "loading"  # created, not running yet (its image loads): its storage bills
RUNNING = "running"  # GPU and storage bill
STOPPED = "stopped"  # paused (stopped, outbid): storage bills; it may run again
EXITED = "exited"  # its container ended without tearing down: storage bills; it does not run again by itself
UNKNOWN = "unknown"  # its cloud cannot say (the host stopped answering): storage bills
OFFLINE = "offline"  # its host is offline: nothing bills
INSTANCE_STATUSES = (PENDING, RUNNING, STOPPED, EXITED, UNKNOWN, OFFLINE)

NOT_YET_RUNNING = frozenset({PENDING, "created"})  # the reaper's loading timeout applies ("created": older ledgers)
ENDED_WITHOUT_TEARDOWN = frozenset({EXITED, UNKNOWN, OFFLINE})  # its teardown cannot run; the instance bills on
BILLED_GPU = frozenset({RUNNING})  # GPU and storage billed
BILLED_STORAGE_ONLY = frozenset({PENDING, "created", STOPPED, EXITED, UNKNOWN})
UNBILLED = frozenset({OFFLINE})
BILLING = BILLED_GPU | BILLED_STORAGE_ONLY | UNBILLED | BILLING_ENDS
