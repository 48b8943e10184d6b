"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd in a temp dir, no systemd.

Settings (DESIGN.md section 10): linuxproc tracking, no task plugin, cons_tres, no accounting,
batch_sched_delay=0 (otherwise ~3 s per dependency hop), kill_invalid_depend, the node line
from `slurmd -C` with NodeAddr=127.0.0.1. Stopped by PID; nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")


def missing_parts() -> list[str]:
    missing = [b for b in NEEDED if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if os.geteuid() != 0:
        missing.append("root (slurmd runs jobs as their user)")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class Cluster:
    root: Path
    env: dict
    procs: list = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pidfile in self.root.glob("*.pid"):  # munged forks: stop it by its own pid file
            try:
                os.kill(int(pidfile.read_text().split()[0]), 15)
            except (ValueError, ProcessLookupError, IndexError):
                pass

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else f"(no {name})"


def start_cluster(root: Path, timeout: float = 60.0) -> Cluster:
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    sock = root / "munge" / "munge.sock"
    cluster = Cluster(root=root, env={})
    cluster.procs.append(
        subprocess.Popen(
            [
                _exe("munged"),
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={sock}",
                f"--pid-file={root / 'munge' / 'munged.pid'}",
                f"--log-file={root / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'munged.seed'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
    )
    _wait(lambda: sock.exists(), 20, "munged socket", cluster, "munged.log")

    host = socket.gethostname().split(".")[0]
    node = subprocess.run([_exe("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    node = " ".join(p for p in node.split() if not p.startswith("NodeName=")) + " NodeAddr=127.0.0.1"
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=vltest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root / "jobcomp.txt"}
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
ReturnToService=2
MpiDefault=none
MinJobAge=3600
NodeName={host} {node}
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {"SLURM_CONF": str(conf)}
    cluster.env = env
    full_env = {**os.environ, **env}
    cluster.procs.append(
        subprocess.Popen([_exe("slurmctld"), "-D", "-c", "-i"], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    )
    cluster.procs.append(subprocess.Popen([_exe("slurmd"), "-D"], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    def node_idle():
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], env=full_env, capture_output=True, text=True)
        return p.returncode == 0 and p.stdout.strip().startswith("idle")

    _wait(node_idle, timeout, "an idle node", cluster, "slurmctld.log")
    return cluster


def _wait(pred, timeout: float, what: str, cluster: Cluster, log: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        if any(p.poll() is not None for p in cluster.procs):
            break
        time.sleep(0.2)
    cluster.stop()
    raise RuntimeError(f"SLURM test cluster: no {what} within {timeout:.0f} s\n{cluster.log(log)}\n{cluster.log('slurmd.log')}")
