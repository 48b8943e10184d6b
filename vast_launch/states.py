"""Launch states and Vast's instance statuses, named once, in the groups the code decides by.

A launch row's `state` is the last state the ledger recorded: a phase of the launch (`searching`,
`creating`, ...), the instance's status as the cloud reported it (`loading`, `running`, `exited`, ...),
or how the launch ended. SLURM's job states are the scheduler's own and live in `slurm/jobs.py`.
"""

# How a launch ends (`Ledger.finish`): a row in one of these is never acted on again.
TERMINAL = frozenset({"destroyed", "failed", "aborted", "cancelled", "completed"})
# Ended by a destroy this side recorded (or by an abort): following must not write another end over it.
ENDED_BY_DESTROY = frozenset({"destroyed", "aborted"})
# A timeline event after which nothing bills: an end, or the instance vanished (`gone`).
BILLING_ENDS = TERMINAL | {"gone"}

# Vast's `actual_status` values, grouped by what they mean for teardown and billing.
LOADING = frozenset({None, "created", "loading"})  # not running yet: the reaper's loading timeout applies
STOPPED_WITHOUT_TEARDOWN = frozenset({"exited", "unknown", "offline"})  # the container ended; the instance bills on
BILLED_GPU = frozenset({"running"})  # GPU and storage billed
BILLED_STORAGE_ONLY = frozenset({"loading", "created", "stopped", "exited", "frozen", "rebooting", "unknown"})
UNBILLED = frozenset({"offline"})
BILLING = BILLED_GPU | BILLED_STORAGE_ONLY | UNBILLED | BILLING_ENDS
