#!/bin/bash
# vast-launch bootstrap for launch t-20261124-080000-ab12. Rendered per launch; holds no secret.
# Vast runs the onstart on every container start, so this is idempotent. Every teardown layer here ends in
# one function, `teardown` (result.json, the bounded final sync to the outputs store, destroy and confirm):
# the trap (any end of this shell) and a watchdog in its own process group (deadline, budget, idle), so
# that a SIGTERM to this shell's group cannot disable both. The Python it runs is package data of
# vast-launch, written below into .vl/ and run by the image's python3 with nothing of the user's.
set -u
L=t-20261124-080000-ab12 SHA=c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeebeef REPO='https://h/a b'"'"'c"d$(touch pwned)`touch pwned2`;e|f&g\h*?[x]{y}~!#%@@GROUP@@
 touch pwned3 #.git' ARCHIVE='https://h/a b'"'"'c"d$(touch pwned)`touch pwned2`;e|f&g\h*?[x]{y}~!#%@@GROUP@@
 touch pwned3 #' AUTO=1 IDLE_S=0 SIG=
STORE='' FINAL_S=120 DEADLINE=${VL_DEADLINE:-2000000000} WHY=${VL_DEADLINE_WHY:-deadline}
ATTEMPT=${VL_ATTEMPT:-1}
case $DEADLINE.$ATTEMPT in *[!0-9.]*|.*|*.) DEADLINE=2000000000 ATTEMPT=1 ;; esac
case $WHY in deadline|budget) ;; *) WHY=deadline ;; esac
export WANDB_RUN_GROUP='g a b'"'"'c"d$(touch pwned)`touch pwned2`;e|f&g\h*?[x]{y}~!#%@@GROUP@@
 touch pwned3 #' VL_PROFILE='p a b'"'"'c"d$(touch pwned)`touch pwned2`;e|f&g\h*?[x]{y}~!#%@@GROUP@@
 touch pwned3 #' VL_CONFIG='c a b'"'"'c"d$(touch pwned)`touch pwned2`;e|f&g\h*?[x]{y}~!#%@@GROUP@@
 touch pwned3 #'
W=${DATA_DIRECTORY:-$HOME}/vl-$L BOOT=$$
V=$W/.vl S=$W/.vl/secrets
# Secrets leave the environment first: each goes from .vl/secrets (0600) only to the process that needs it
# (the git token to the fetch, the W&B key to the stages, the store's keys to the sync, the instance key
# to destroy). Only their names reach argv.
SECRETS=(WANDB_API_KEY VL_GIT_TOKEN AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN CONTAINER_API_KEY)
if [ -z "${VL_STASHED:-}" ]; then
  (umask 077; mkdir -p "$S") || exit 1
  for n in "${SECRETS[@]}"; do [ -n "${!n:-}" ] && (umask 077; printf '%s' "${!n}" > "$S/$n"); done
  # shellcheck disable=SC2046  # one `-u NAME` per word, names only
  exec env $(for n in "${SECRETS[@]}" $(compgen -e VL_BOOT_); do printf -- '-u %s ' "$n"; done) VL_STASHED=1 bash "$0"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
mkdir -p "$W/out" && cd "$W" || exit 1
# Where ssh sessions (which may lack DATA_DIRECTORY) find it; noclobber: never written through a planted link.
( set -C; echo "$W" > "/tmp/vl-$L.dir" ) 2>/dev/null
# Log to a file, never through a pipe that a group SIGTERM can kill; a mirror in its own process
# group copies the file to the container's output, which is what Vast's logs API returns.
trap '' PIPE
touch boot.log
exec 3>&1 >>boot.log 2>&1
set -m
tail -c +$(($(stat -c %s boot.log) + 1)) -s 0.2 -F boot.log >&3 2>/dev/null &
set +m
cat > stages.tsv <<'VL_STAGES'
a	echo a
VL_STAGES
cat > run_stages.sh <<'VL_RUNNER'
#!/bin/bash
# Runs the launch's stages in order. A stage is finished when its marker is in $VL_W/markers or its done
# line is in $VL_W/events (an earlier instance of the launch, pulled from the outputs store): after a
# container restart or on a new instance, finished stages are skipped. Stage commands come from
# $VL_W/stages.tsv (name<TAB>command). $VL_W/stage.pid holds this runner's pid while a stage runs (the
# idle watchdog). The W&B key goes to the stages' environment alone; each stage end asks for a sync.
set -o pipefail
M=$VL_W/markers S=$VL_W/.vl/secrets F=$VL_W/.vl/agent.fifo; mkdir -p "$M"
mapfile -t ST < "$VL_W/stages.tsv"
n=${#ST[@]} k=0
ev(){ echo "$1"; echo "$1" >> "$VL_W/events"; }
sync_asked(){ [ -p "$F" ] && echo sync 1<>"$F"; }
echo $$ > "$VL_W/stage.pid"
for line in "${ST[@]}"; do
  name=${line%%$'\t'*} cmd=${line#*$'\t'} k=$((k + 1))
  if [ -f "$M/$name.done" ] || grep -qF " $name: done at=" "$VL_W/events" 2>/dev/null; then
    echo "[vast-launch] stage $k/$n $name: already done, skipped"; continue
  fi
  echo "$name" > "$VL_W/current_stage"
  start=$(date +%s.%N)
  ev "[vast-launch] stage $k/$n $name: start at=$start"
  sync_asked  # the store's events say which stage runs, for a launch nobody follows
  if [ -r "$S/WANDB_API_KEY" ]; then WANDB_API_KEY=$(<"$S/WANDB_API_KEY") bash -c "$cmd"; else bash -c "$cmd"; fi; rc=$?
  end=$(date +%s.%N)
  echo "$name $start $end $rc" >> "$VL_W/stage_times"
  if [ $rc -ne 0 ]; then
    echo "$name" > "$VL_W/failed_stage"
    ev "[vast-launch] stage $k/$n $name: FAILED (exit $rc) at=$end start=$start"
    rm -f "$VL_W/stage.pid"
    exit $rc
  fi
  touch "$M/$name.done"
  ev "[vast-launch] stage $k/$n $name: done at=$end start=$start"
  sync_asked
done
rm -f "$VL_W/stage.pid" "$VL_W/current_stage"
VL_RUNNER
(umask 077; mkdir -p "$V/vast_launch" "$V/vast_launch/store" "$V/vast_launch/vast/shell" && touch "$V/vast_launch/__init__.py" "$V/vast_launch/store/__init__.py" "$V/vast_launch/vast/shell/__init__.py")
cat > "$V/launch.json" <<'VL_PY'
{"launch_id": "t-20261124-080000-ab12", "commit": "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeebeef", "auto_shutdown": true, "final_sync_timeout_s": 120, "sync_every_s": 0, "ack_wait_s": 0}
VL_PY
cat > "$V/store.json" <<'VL_PY'
{}
VL_PY
cat > "$V/vast_launch/protocol.py" <<'VL_PY'
from __future__ import annotations
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
LABEL_PREFIX = 'vast-launch:'
RESULT_SEEN = ' result-seen'
ACK_WAIT_SECONDS = 10
FOLLOWED_UNTIL = 'fw'
FOLLOW_RENEW_SECONDS = 15
FOLLOW_LEASE_SECONDS = 45
LAUNCH_ID = re.compile('^[A-Za-z0-9][A-Za-z0-9._-]*$')

def new_launch_id(name: str) -> str:
    slug = re.sub('[^a-z0-9]+', '-', name.lower()).strip('-')[:24] or 'launch'
    return f'{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}'

@dataclass
class Label:
    launch_id: str
    workspace: Optional[str] = None
    deadline: Optional[float] = None
    followed_until: Optional[float] = None
    result_seen: bool = False

    def text(self) -> str:
        fields = [LABEL_PREFIX + self.launch_id]
        fields += [f'ws={self.workspace}'] if self.workspace else []
        fields += [f'dl={int(self.deadline)}'] if self.deadline else []
        fields += [f'{FOLLOWED_UNTIL}={int(self.followed_until)}'] if self.followed_until else []
        return ' '.join(fields) + (RESULT_SEEN if self.result_seen else '')

def parse_label(label: Optional[str]) -> Optional[Label]:
    label = label or ''
    if not label.startswith(LABEL_PREFIX):
        return None
    words = label[len(LABEL_PREFIX):].split()
    if not words or not LAUNCH_ID.match(words[0]):
        return None
    out = Label(words[0], result_seen=RESULT_SEEN.strip() in words[1:])
    for word in words[1:]:
        key, _, value = word.partition('=')
        try:
            if key == 'ws' and value:
                out.workspace = value
            elif key == 'dl':
                out.deadline = float(value)
            elif key == FOLLOWED_UNTIL:
                out.followed_until = float(value)
        except ValueError:
            continue
    return out

def label_for(launch_id: str, workspace: Optional[str]=None, deadline: Optional[float]=None) -> str:
    return Label(launch_id, workspace, deadline).text()

def launch_id_of(label: Optional[str]) -> Optional[str]:
    parsed = parse_label(label)
    return parsed.launch_id if parsed else None
WORKSPACE = re.compile('^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_NO_RESULT = 3
EXIT_NOT_DESTROYED = 4
EXIT_WATCHDOG = 124
EXIT_INTERRUPTED = 130
RESULT_FILE = 'result'
WATCHDOG_FILE = 'deadline_hit'
STAGE_TIMES_FILE = 'stage_times'
CURRENT_STAGE_FILE = 'current_stage'
EVENTS_FILE = 'events'
BOOT_LOG = 'boot.log'
HELPERS_DIR = '.vl'
INSTANCE_SECRETS = ('WANDB_API_KEY', 'VL_GIT_TOKEN', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'CONTAINER_API_KEY')
RESERVED_ENV_PREFIXES = ('VL_', 'CONTAINER_', 'VAST_', 'VASTAI_', 'LOCALCLOUD_')
RESERVED_ENV = frozenset({'WANDB_RUN_GROUP', 'WANDB_GROUP', 'WANDB_MODE', 'WANDB_PROJECT', 'WANDB_ENTITY', 'WANDB_DIR', 'DATA_DIRECTORY'} | {'PUBLIC_IPADDR', 'GPU_COUNT', 'PYTHONPATH', 'PATH', 'HOME', 'PIP_DISABLE_PIP_VERSION_CHECK', 'PIP_ROOT_USER_ACTION'} | set(INSTANCE_SECRETS))

def reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)
STORE_OUT = 'out/'
STORE_LOGS = 'log/'
STORE_EVENTS = EVENTS_FILE
STORE_RESULT = 'result.json'
NOT_SYNCED_SUFFIXES = ('.tmp', '.part')
END_REASONS = ('success', 'stage_failure', 'signal', 'deadline', 'budget', 'idle')
RESULT_LINE = re.compile('\\[vast-launch\\] .*result rc=(\\d+) failed_stage=(\\S*) at=([\\d.]+)(?: signal=(\\w+))?')
STAGE_LINE = re.compile('\\[vast-launch\\] stage (\\d+)/(\\d+) (\\S+): (start|done|FAILED \\(exit (\\d+)\\)) at=([\\d.]+)(?: start=([\\d.]+))?')
WATCHDOG_LINE = re.compile('\\[vast-launch\\] \\S+ (?:(deadline|budget) reached|(idle) for \\d+ s): destroying')
SLURM_START_ECHO = 'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: start at=$(date +%s.%N) on $(hostname)"'
SLURM_EXIT_ECHO = 'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: exit $rc at=$(date +%s.%N)"'
SLURM_EXIT_LINE = re.compile('\\[vast-launch\\] slurm job \\S+ stage \\S+: exit (\\d+) at=')
WATCHDOG_REASONS = {'deadline': 'deadline reached (lifecycle.max_hours)', 'budget': 'budget reached (lifecycle.max_cost_usd)', 'idle': 'idle too long (lifecycle.idle_minutes)'}

def store_log(attempt: int) -> str:
    return f'{STORE_LOGS}boot-{int(attempt)}.log'

def workdir_name(launch_id: str) -> str:
    return f'vl-{launch_id}'
LOCAL_INSTANCE_DIR = 'instance-{id}'
WORKDIR_NOTE = '/tmp/vl-{launch_id}.dir'

def local_instance_workdir(cloud_root: Path, instance_id: int, launch_id: str) -> Path:
    return cloud_root / LOCAL_INSTANCE_DIR.format(id=instance_id) / workdir_name(launch_id)

@dataclass
class StageEvent:
    index: int
    total: int
    name: str
    phase: str
    at: float
    start: Optional[float] = None
    rc: Optional[int] = None

def parse_stage_line(line: str) -> Optional[StageEvent]:
    m = STAGE_LINE.search(line)
    if m is None:
        return None
    phase = 'start' if m.group(4) == 'start' else 'done' if m.group(4) == 'done' else 'failed'
    return StageEvent(int(m.group(1)), int(m.group(2)), m.group(3), phase, float(m.group(6)), float(m.group(7)) if m.group(7) else None, 0 if phase == 'done' else int(m.group(5)) if phase == 'failed' else None)

@dataclass
class Outcome:
    rc: Optional[int] = None
    failed_stage: str = ''
    signal: str = ''
    result_at: Optional[float] = None
    watchdog: Optional[str] = None

    def read_line(self, line: str) -> bool:
        w = WATCHDOG_LINE.search(line)
        if w:
            self.watchdog = w.group(1) or w.group(2)
        m = RESULT_LINE.search(line)
        if m is None:
            return False
        self.rc, self.failed_stage = (int(m.group(1)), m.group(2))
        self.result_at, self.signal = (float(m.group(3)), m.group(4) or '')
        return True

    @classmethod
    def from_workdir(cls, vl_dir: Path) -> 'Outcome':
        out = cls()
        result = vl_dir / RESULT_FILE
        if result.exists():
            kv = dict((p.split('=', 1) for p in result.read_text().split() if '=' in p))
            out.rc = int(kv.get('rc', -1))
            out.failed_stage, out.signal = (kv.get('failed_stage', ''), kv.get('signal', ''))
            out.result_at = float(kv['t']) if kv.get('t') else None
        hit = vl_dir / WATCHDOG_FILE
        if hit.exists():
            out.watchdog = hit.read_text().strip() or 'deadline'
        return out

    @classmethod
    def from_result(cls, doc: dict) -> 'Outcome':
        out = cls(rc=doc.get('rc') if isinstance(doc.get('rc'), int) else None, failed_stage=str(doc.get('failed_stage') or ''), signal=str(doc.get('signal') or ''), result_at=float(doc['t']) if isinstance(doc.get('t'), (int, float)) else None, watchdog=doc.get('watchdog') if doc.get('watchdog') in WATCHDOG_REASONS else None)
        return out

    def end_code(self) -> str:
        if self.watchdog_ended_run:
            return str(self.watchdog)
        if self.rc is None:
            return 'unknown'
        return 'success' if self.rc == 0 else 'signal' if self.signal else 'stage_failure'

    def merge(self, other: 'Outcome') -> None:
        for name in ('rc', 'failed_stage', 'signal', 'result_at', 'watchdog'):
            if getattr(other, name) not in (None, ''):
                setattr(self, name, getattr(other, name))

    @property
    def watchdog_ended_run(self) -> bool:
        return self.watchdog is not None and (self.rc is None or (self.rc != 0 and self.signal != ''))

    def end_reason(self, destroyed_by_self: bool=True) -> str:
        by = 'the instance destroyed itself' if destroyed_by_self else 'the instance was destroyed'
        if self.watchdog_ended_run:
            return f'{WATCHDOG_REASONS.get(self.watchdog, self.watchdog)}: destroyed by the in-instance watchdog'
        if self.rc is None:
            return 'instance gone without a result (destroyed outside this launcher, or its log was lost)'
        if self.rc == 0:
            tail = f'; then {WATCHDOG_REASONS[self.watchdog]}' if self.watchdog in WATCHDOG_REASONS else ''
            return f'completed: all stages done; {by}{tail}'
        stage = self.failed_stage or 'setup'
        if self.signal:
            return f'terminated (SIG{self.signal}) in stage {stage} (exit {self.rc}); {by}'
        return f'failed in stage {stage} (exit {self.rc}); {by}'

    def exit_code(self) -> int:
        if self.watchdog_ended_run:
            return EXIT_WATCHDOG
        if self.rc is None:
            return EXIT_NO_RESULT
        return self.rc if 0 <= self.rc < 256 else EXIT_NO_RESULT

def stage_times(vl_dir: Path) -> list[dict]:
    try:
        lines = (vl_dir / STAGE_TIMES_FILE).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4:
            try:
                out.append({'name': parts[0], 'start': float(parts[1]), 'end': float(parts[2]), 'rc': int(parts[3])})
            except ValueError:
                continue
    return out

def result_document(vl_dir: Path, ended_by: str, launch: dict, outputs: str) -> dict:
    out = Outcome.from_workdir(vl_dir)
    if ended_by in WATCHDOG_REASONS:
        out.watchdog = ended_by
        if out.rc is None:
            try:
                out.failed_stage = (vl_dir / CURRENT_STAGE_FILE).read_text().strip()
            except OSError:
                out.failed_stage = ''
    return {'version': 1, **{k: launch.get(k) for k in ('launch_id', 'commit', 'attempt', 'instance_id')}, 'rc': out.rc, 'failed_stage': out.failed_stage, 'signal': out.signal, 'watchdog': out.watchdog, 'end_reason': out.end_code(), 'exit_code': out.exit_code(), 'stage_times': stage_times(vl_dir), 't': time.time(), 'outputs': outputs}
VL_PY
cat > "$V/vast_launch/store/objects.py" <<'VL_PY'
from __future__ import annotations
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Union
from urllib.parse import unquote, urlsplit
from vast_launch import protocol
OBSTORE_PIN = 'obstore==0.12.1'
PART_BYTES = 16 << 20
SMALL_BYTES = 8 << 20

class StoreError(Exception):
    pass

class DirStore:

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split('/') if p]
        if not parts or any((p in ('.', '..') for p in parts)):
            raise StoreError(f'not a key: {key!r}')
        return self.root.joinpath(*parts)

    def put_file(self, key: str, src: Path) -> int:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix='.put-')
        try:
            with open(src, 'rb') as f, os.fdopen(fd, 'wb') as out:
                shutil.copyfileobj(f, out, 1 << 20)
                size = out.tell()
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix='.put-')
        with os.fdopen(fd, 'wb') as out:
            out.write(data)
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> Optional[bytes]:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def get_file(self, key: str, dest: Path, progress: Optional[Callable[[int], None]]=None) -> None:
        src = self._path(key)
        with open(src, 'rb') as f, _atomic_out(dest) as out:
            while (chunk := f.read(1 << 20)):
                out.write(chunk)
                if progress:
                    progress(len(chunk))

    def list(self, prefix: str) -> list[tuple[str, int]]:
        base = self.root.joinpath(*[p for p in prefix.split('/') if p])
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.rglob('*')):
            if path.is_file() and (not path.is_symlink()) and (not path.name.startswith('.put-')):
                found.append((path.relative_to(self.root).as_posix(), path.stat().st_size))
        return found

class S3Store:

    def __init__(self, bucket: str, prefix: str, endpoint: Optional[str], region: Optional[str], credentials: dict):
        try:
            from datetime import timedelta
            from obstore.store import S3Store as _S3
        except ImportError as exc:
            raise StoreError(f'the outputs store needs {OBSTORE_PIN} (pip install {OBSTORE_PIN}): {exc}')
        self.url = f's3://{bucket}/{prefix}'.rstrip('/')
        options = {'timeout': timedelta(seconds=120), 'connect_timeout': timedelta(seconds=10)}
        if endpoint and endpoint.startswith('http://'):
            options['allow_http'] = True
        config = {k: v for k, v in credentials.items() if v}
        if endpoint:
            config['endpoint'] = endpoint
        self.store = _S3(bucket, prefix=prefix or None, region=region or 'us-east-1', client_options=options, retry_config={'max_retries': 4, 'retry_timeout': timedelta(seconds=60)}, **config)

    def _call(self, what: str, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f'{self.url}: {what}: {first[:300]}') from None

    def put_file(self, key: str, src: Path) -> int:
        import obstore
        size = Path(src).stat().st_size
        with open(src, 'rb') as f:
            if size < SMALL_BYTES:
                data = f.read()
                self._call(f'put {key}', lambda: obstore.put(self.store, key, data))
                return len(data)
            self._call(f'put {key}', lambda: obstore.put(self.store, key, f, chunk_size=PART_BYTES, max_concurrency=8))
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        import obstore
        self._call(f'put {key}', lambda: obstore.put(self.store, key, data))

    def get_bytes(self, key: str) -> Optional[bytes]:
        import obstore
        try:
            return bytes(self._call(f'get {key}', lambda: obstore.get(self.store, key).bytes()))
        except FileNotFoundError:
            return None

    def get_file(self, key: str, dest: Path, progress: Optional[Callable[[int], None]]=None) -> None:
        import obstore

        def fetch():
            with _atomic_out(dest) as out:
                for chunk in obstore.get(self.store, key).stream(min_chunk_size=1 << 20):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
        self._call(f'get {key}', fetch)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        import obstore

        def walk():
            return [(m['path'], int(m['size'])) for batch in obstore.list(self.store, prefix=prefix) for m in batch]
        return sorted(self._call(f'list {prefix}', walk))
Store = Union[DirStore, S3Store]

class _atomic_out:

    def __init__(self, dest: Path):
        self.dest = Path(dest)

    def __enter__(self):
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.dest.parent, prefix=f'.{self.dest.name}.', suffix='.part')
        self.f = os.fdopen(fd, 'wb')
        return self.f

    def __exit__(self, kind, value, tb) -> None:
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.dest)
        else:
            Path(self.tmp).unlink(missing_ok=True)

def open_store(url: str, endpoint: Optional[str]=None, region: Optional[str]=None, credentials: Optional[dict]=None) -> Store:
    parts = urlsplit(url)
    if parts.scheme == 'file':
        if parts.netloc not in ('', 'localhost'):
            raise StoreError(f'{url}: a file:// URL names a path on this machine (file:///path)')
        return DirStore(Path(unquote(parts.path)))
    if parts.scheme == 's3':
        if not parts.netloc:
            raise StoreError(f'{url}: no bucket (s3://bucket/prefix)')
        return S3Store(parts.netloc, parts.path.strip('/'), endpoint, region, credentials or {})
    raise StoreError(f'{url}: the outputs store is s3://bucket/prefix or file:///path')

def sync_plan(workdir: Path) -> Iterator[tuple[str, Path]]:
    out = workdir / 'out'
    if out.is_dir():
        for path in sorted(out.rglob('*')):
            if path.is_file() and (not path.is_symlink()) and (not path.name.endswith(protocol.NOT_SYNCED_SUFFIXES)):
                yield (protocol.STORE_OUT + path.relative_to(out).as_posix(), path)
    try:
        attempt = int(json.loads((workdir / protocol.HELPERS_DIR / 'run.json').read_text()).get('attempt') or 1)
    except (OSError, ValueError):
        attempt = 1
    for key, name in ((protocol.STORE_EVENTS, protocol.EVENTS_FILE), (protocol.store_log(attempt), protocol.BOOT_LOG)):
        if (workdir / name).is_file():
            yield (key, workdir / name)

class Syncer:

    def __init__(self, store: Store, launch_id: str, workdir: Path):
        self.store, self.prefix, self.workdir = (store, launch_id.rstrip('/') + '/', Path(workdir))
        self.memo = self.workdir / protocol.HELPERS_DIR / 'synced.json'
        try:
            self.sent: dict = json.loads(self.memo.read_text())
        except (OSError, ValueError):
            self.sent = {}

    def push(self, until: Optional[float]=None, stop: Optional[Callable[[], bool]]=None) -> tuple[int, int, bool]:
        files = sent_bytes = 0
        whole = True
        for key, path in list(sync_plan(self.workdir)):
            if until is not None and time.time() >= until or (stop is not None and stop()):
                whole = False
                break
            try:
                st = path.stat()
            except OSError:
                continue
            mark = [st.st_size, st.st_mtime_ns]
            if self.sent.get(key) == mark:
                continue
            sent_bytes += self.store.put_file(self.prefix + key, path)
            files += 1
            self.sent[key] = mark
        self._remember()
        return (files, sent_bytes, whole)

    def put_result(self, doc: dict) -> None:
        self.store.put_bytes(self.prefix + protocol.STORE_RESULT, json.dumps(doc, indent=1).encode())

    def pull(self) -> int:
        n = 0
        for key, _ in self.store.list(self.prefix + protocol.STORE_OUT):
            rel = key[len(self.prefix + protocol.STORE_OUT):]
            self.store.get_file(key, self.workdir / 'out' / rel)
            n += 1
        events = self.store.get_bytes(self.prefix + protocol.STORE_EVENTS)
        if events is not None:
            (self.workdir / protocol.EVENTS_FILE).write_bytes(events)
            n += 1
        for key, path in sync_plan(self.workdir):
            st = path.stat()
            self.sent[key] = [st.st_size, st.st_mtime_ns]
        self._remember()
        return n

    def _remember(self) -> None:
        with _atomic_out(self.memo) as f:
            f.write(json.dumps(dict(self.sent)).encode())

def instance_store(workdir: Path) -> Optional[Store]:
    helpers = Path(workdir) / protocol.HELPERS_DIR
    try:
        spec = json.loads((helpers / 'store.json').read_text())
    except (OSError, ValueError):
        return None
    if not spec.get('url'):
        return None
    sys.path.insert(0, str(helpers / 'py'))
    secrets = helpers / 'secrets'
    creds = {}
    for name, field in (('AWS_ACCESS_KEY_ID', 'access_key_id'), ('AWS_SECRET_ACCESS_KEY', 'secret_access_key'), ('AWS_SESSION_TOKEN', 'session_token')):
        try:
            creds[field] = (secrets / name).read_text().strip()
        except OSError:
            pass
    return open_store(spec['url'], spec.get('endpoint_url'), spec.get('region'), creds)

def main(argv: Optional[list[str]]=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ('push', 'pull'):
        print('usage: objects.py push|pull WORKDIR LAUNCH_ID', file=sys.stderr)
        return 2
    what, workdir, launch_id = argv
    try:
        store = instance_store(Path(workdir))
        if store is None:
            return 0
        syncer = Syncer(store, launch_id, Path(workdir))
        if what == 'pull':
            print(f'[vast-launch] pulled {syncer.pull()} file(s) of an earlier attempt from {store.url}')
        else:
            files, sent, _ = syncer.push()
            print(f'[vast-launch] synced {files} file(s), {sent / 1000000.0:.1f} MB to {store.url}')
    except (StoreError, OSError) as exc:
        print(f'[vast-launch] outputs store: {exc}', file=sys.stderr)
        return 1
    return 0
if __name__ == '__main__':
    sys.exit(main())
VL_PY
cat > "$V/vast_launch/vast/shell/agent.py" <<'VL_PY'
from __future__ import annotations
import json
import os
import select
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional
from vast_launch import protocol
from vast_launch.store import objects
DESTROY_MARGIN_S = 5.0

def log(msg: str) -> None:
    print(f"[vast-launch] {time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)

class Instance:

    def __init__(self, helpers: Path):
        base = (os.environ.get('VAST_URL') or 'https://console.vast.ai').rstrip('/')
        self.url = f"{base}/api/v0/instances/{os.environ.get('CONTAINER_ID', '')}/?owner=me"
        try:
            key = (helpers / 'secrets' / 'CONTAINER_API_KEY').read_text().strip()
        except OSError:
            key = ''
        self.headers = {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'}

    def call(self, method: str) -> dict:
        data = b'{}' if method == 'DELETE' else None
        try:
            req = urllib.request.Request(self.url, method=method, data=data, headers=self.headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                body = json.load(r)
                return body if isinstance(body, dict) else {}
        except Exception as exc:
            return {'code': getattr(exc, 'code', 0) or -1}

    def gone(self) -> bool:
        for _ in range(12):
            body = self.call('GET')
            if body.get('instances', 1) is None or body.get('code') in (401, 403, 404):
                return True
            time.sleep(0.25)
        return False

    def destroy(self, tries: int=8) -> bool:
        for i in range(tries):
            if self.call('DELETE').get('code', 0) in (0, 404) and self.gone():
                return True
            time.sleep(min(0.3 * 2 ** i, 6.0))
        return False

    def wait_for_acknowledgement(self, seconds: float) -> None:
        if seconds <= 0:
            return
        t0 = time.time()
        while time.time() < t0 + seconds:
            label = protocol.parse_label(str((self.call('GET').get('instances') or {}).get('label') or ''))
            if label is not None and label.result_seen:
                log(f'its launcher saw the result ({time.time() - t0:.1f} s)')
                return
            if label is None or (label.followed_until or 0) < time.time():
                return
            time.sleep(0.05)
        log(f'no acknowledgement from its launcher within {seconds:g} s')

class Agent:

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.helpers = self.workdir / protocol.HELPERS_DIR
        self.launch = json.loads((self.helpers / 'launch.json').read_text())
        self.run = json.loads((self.helpers / 'run.json').read_text())
        self.instance = Instance(self.helpers)
        self.syncer: Optional[objects.Syncer] = None
        try:
            store = objects.instance_store(self.workdir)
        except objects.StoreError as exc:
            log(f'outputs store: {exc}')
            store = None
        if store is not None:
            self.syncer = objects.Syncer(store, self.launch['launch_id'], self.workdir)
        self._sync_lock = threading.Lock()
        self._stop_syncs = threading.Event()
        self._ack: Optional[threading.Thread] = None

    def acknowledgement(self) -> threading.Thread:
        if self._ack is None:
            wait = float(self.launch.get('ack_wait_s') or 0) if self.syncer is None else 0.0
            self._ack = threading.Thread(target=self.instance.wait_for_acknowledgement, args=(wait,), daemon=True)
            self._ack.start()
        return self._ack

    def sync(self) -> None:
        if self.syncer is None or not self._sync_lock.acquire(blocking=False):
            return
        try:
            files, sent, _ = self.syncer.push(stop=self._stop_syncs.is_set)
            if files:
                log(f'synced {files} file(s), {sent / 1000000.0:.1f} MB to {self.syncer.store.url}')
        except (objects.StoreError, OSError) as exc:
            log(f'sync failed (next time again): {exc}')
        finally:
            self._sync_lock.release()

    def finish(self, why: str, force: bool) -> bool:
        deadline = float(self.run['deadline'])
        until = min(time.time() + float(self.launch['final_sync_timeout_s']), deadline - DESTROY_MARGIN_S)
        ident = {**self.launch, 'attempt': self.run.get('attempt'), 'instance_id': os.environ.get('CONTAINER_ID')}
        doc = protocol.result_document(self.workdir, why, ident, outputs='syncing' if self.syncer else 'none')
        (self.workdir / protocol.STORE_RESULT).write_text(json.dumps(doc, indent=1))
        if self.syncer is not None:
            self._final_sync(doc, until)
        if not (self.launch['auto_shutdown'] or force):
            log('auto-shutdown off: the instance is left running until its deadline or idle limit')
            return True
        self.acknowledgement().join()
        log(f"destroying instance {os.environ.get('CONTAINER_ID')}")
        return self.instance.destroy()

    def _final_sync(self, doc: dict, until: float) -> None:
        self._stop_syncs.set()
        self._sync_lock.acquire(timeout=max(0.0, min(10.0, until - time.time())))
        t0 = time.time()
        try:
            self.syncer.put_result(doc)
            files, sent, whole = self.syncer.push(until=until)
            doc['outputs'] = 'complete' if whole else 'partial'
            log(f'final sync: {files} file(s), {sent / 1000000.0:.1f} MB in {time.time() - t0:.1f} s' + ('' if whole else ', out of time'))
            self.syncer.push(until=until)
            self.syncer.put_result(doc)
        except (objects.StoreError, OSError) as exc:
            log(f'final sync failed: {exc}')

    def serve(self) -> int:
        fd = os.open(self.helpers / 'agent.fifo', os.O_RDWR)
        every = float(self.launch.get('sync_every_s') or 0)
        next_sync = time.time() + every if every and self.syncer else None
        pending = b''
        while True:
            wait = None if next_sync is None else max(0.0, next_sync - time.time())
            if not select.select([fd], [], [], wait)[0]:
                threading.Thread(target=self.sync, daemon=True).start()
                next_sync = time.time() + every
                continue
            pending += os.read(fd, 4096)
            while b'\n' in pending:
                line, pending = pending.split(b'\n', 1)
                words = line.decode(errors='replace').split()
                if words[:1] == ['sync']:
                    threading.Thread(target=self.sync, daemon=True).start()
                elif words[:1] == ['result']:
                    self.acknowledgement()
                elif words[:1] == ['go'] and len(words) >= 2:
                    return 0 if self.finish(words[1], 'force' in words[2:]) else 1

def main(argv: Optional[list[str]]=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ('serve', 'finish', 'destroy', 'gone'):
        print(__doc__, file=sys.stderr)
        return 2
    workdir = Path(argv[1])
    if argv[0] in ('destroy', 'gone'):
        instance = Instance(workdir / protocol.HELPERS_DIR)
        return 0 if (instance.destroy() if argv[0] == 'destroy' else instance.gone()) else 1
    agent = Agent(workdir)
    if argv[0] == 'serve':
        rc = agent.serve()
    else:
        rc = 0 if agent.finish(argv[2] if len(argv) > 2 else 'done', 'force' in argv[3:]) else 1
    (workdir / protocol.HELPERS_DIR / 'teardown.rc').write_text(f'{rc}\n')
    return rc
if __name__ == '__main__':
    sys.exit(main())
VL_PY
cat > "$V/vast_launch/vast/shell/archive.py" <<'VL_PY'
from __future__ import annotations
import io
import os
import sys
import tarfile
import urllib.request

class NoAuthOnRedirect(urllib.request.HTTPRedirectHandler):

    def redirect_request(self, *args):
        req = super().redirect_request(*args)
        if req is not None:
            req.remove_header('Authorization')
        return req

def safe_members(tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    tops = {m.name.split('/')[0] for m in members}
    if len(tops) == 1 and any(('/' in m.name for m in members)):
        members = [m for m in members if '/' in m.name]
        for m in members:
            m.name = m.name.split('/', 1)[1]
    for m in members:
        if m.name.startswith('/') or '..' in m.name.split('/') or (not (m.isfile() or m.isdir() or m.issym())):
            raise ValueError(f'unsafe archive member {m.name}')
    return members

def fetch(url: str, dest: str) -> None:
    token = os.environ.get('VL_GIT_TOKEN')
    req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token} if token else {})
    data = urllib.request.build_opener(NoAuthOnRedirect).open(req, timeout=300).read()
    tf = tarfile.open(fileobj=io.BytesIO(data))
    members = safe_members(tf)
    tf.extractall(dest, members=members, **{'filter': 'data'} if hasattr(tarfile, 'data_filter') else {})

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        fetch(*argv)
    except (OSError, ValueError, tarfile.TarError) as exc:
        print(f'[vast-launch] archive {argv[0]}: {exc}', file=sys.stderr)
        return 1
    return 0
if __name__ == '__main__':
    sys.exit(main())
VL_PY
printf '{"deadline": %s, "attempt": %s}\n' "$DEADLINE" "$ATTEMPT" > "$V/run.json"
export VL_LAUNCH_ID=$L VL_OUT=$W/out VL_W=$W WANDB_DIR=$W/out PYTHONPATH=$W/repo/src:$W/repo
log(){ echo "[vast-launch] $(date -u +%H:%M:%S) $*"; }
py(){ (cd "$V" && exec python3 -E -S -m "vast_launch.$1" "${@:2}"); }
AGENT="" LIB=""
agent_up(){ [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; }
tell(){ agent_up && [ -p "$V/agent.fifo" ] && echo "$*" 1<>"$V/agent.fifo"; }
# The agent's end (at most until the hard deadline), and whether its teardown did what it was asked.
agent_wait(){ if [ "$BASHPID" = "$BOOT" ]; then wait "$AGENT"; return; fi
  while kill -0 "$AGENT" 2>/dev/null; do [ "$(date +%s)" -ge "$DEADLINE" ] && return 1; sleep 0.05; done
  [ "$(cat "$V/teardown.rc" 2>/dev/null)" = 0 ]; }
# The last resort when the agent's DELETE failed: the vastai CLI (it exits 0 on HTTP errors, so ask again).
cli_destroy(){ local i; command -v vastai >/dev/null || { log "could not destroy; the watchdog and the reaper remain"; return 1; }
  for i in 1 2 3; do
    log "destroying instance $CONTAINER_ID with the vastai CLI (try $i)"
    VAST_API_KEY=$(cat "$S/CONTAINER_API_KEY" 2>/dev/null) vastai destroy instance "$CONTAINER_ID" -y >/dev/null 2>&1
    py vast.shell.agent gone "$W" && return; sleep $((i * 2))
  done; log "could not destroy; the watchdog and the reaper remain"; return 1; }
# The one teardown ($1: done, deadline, budget or idle; $2: force, to destroy with auto-shutdown off too).
# One layer tears down at a time; the watchdog, finding the other one still syncing, destroys at the hard
# deadline itself, upload or not.
teardown(){
  if ! mkdir "$V/teardown" 2>/dev/null; then [ "${2:-}" = force ] && at_deadline "$@"; return 0; fi
  if agent_up; then tell go "$@"; agent_wait; else
    log "the teardown agent is not running: tearing down in a new process"
    [ -n "$LIB" ] && wait "$LIB"; py vast.shell.agent finish "$W" "$@"; fi && {
    [ "$AUTO" = 1 ] || [ "${2:-}" = force ] || rmdir "$V/teardown"; return 0; }
  { [ "$AUTO" = 1 ] || [ "${2:-}" = force ]; } && cli_destroy
}
at_deadline(){ while [ -d "$V/teardown" ] && [ "$(date +%s)" -lt "$DEADLINE" ]; do sleep 1; done
  [ -d "$V/teardown" ] || { teardown "$@"; return; }
  log "hard deadline: the other teardown is still syncing; destroying now"
  py vast.shell.agent destroy "$W" || cli_destroy; }
# W&B may still be writing after a stage exits: wait for this launch's wandb-core (no pgrep in slim images).
wandb_busy(){ local f a; for f in /proc/[0-9]*/cmdline; do
  mapfile -d '' a 2>/dev/null <"$f"; [[ "${a[*]}" == *wandb-core* ]] || continue
  mapfile -d '' a 2>/dev/null <"${f%cmdline}environ"; [[ " ${a[*]} " == *" VL_LAUNCH_ID=$L "* ]] && return 0
done; return 1; }
wandb_wait(){ for _ in $(seq 1200); do wandb_busy || return; sleep 0.1; done; }
finish(){
  rc=$?; trap '' TERM INT HUP; set +e
  [ "$rc" = 0 ] && touch "$W/done"
  fs=$(cat "$W/failed_stage" 2>/dev/null)
  [ -z "$fs" ] && [ "$rc" != 0 ] && fs=$(cat "$W/current_stage" 2>/dev/null)
  echo "rc=$rc failed_stage=$fs signal=$SIG t=$(date +%s.%N)" > "$W/result"
  log "result rc=$rc failed_stage=$fs at=$(date +%s.%N)${SIG:+ signal=$SIG}"
  tell result
  wandb_wait
  # A container stop or restart sends TERM, then KILL after a grace (Docker: 10 s): wait that out, so a
  # restarted instance resumes; a TERM that is not followed by a KILL still ends in a destroy.
  [ "$SIG" = TERM ] && sleep 12
  teardown "done"
}
gpu_busy(){ local u; command -v nvidia-smi >/dev/null || return 1
  for u in $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null); do
    [ "${u%%.*}" -ge 5 ] 2>/dev/null && return 0; done; return 1; }
busy(){ kill -0 "$(cat "$W/stage.pid" 2>/dev/null)" 2>/dev/null || gpu_busy \
  || { [ ! -f "$W/result" ] && kill -0 "$BOOT" 2>/dev/null; }; }
hit(){ echo "$1" > "$W/deadline_hit"; log "$2: destroying"; teardown "$1" force; }
# With a store the watchdog starts early enough for the final sync and the destroy to end by the deadline.
FIRE=$DEADLINE; [ -n "$STORE" ] && FIRE=$((DEADLINE - FINAL_S - 5))
watchdog(){
  trap '' TERM INT HUP; local now nap idle_since; idle_since=$(date +%s)
  while :; do
    now=$(date +%s)
    [ "$now" -ge "$FIRE" ] && { hit "$WHY" "$WHY reached"; return; }
    nap=$((FIRE - now))
    if [ "$IDLE_S" -gt 0 ]; then
      busy && idle_since=$now
      [ $((now - idle_since)) -ge "$IDLE_S" ] && { hit idle "idle for $IDLE_S s"; return; }
      nap=$((nap < 15 ? nap : 15)); nap=$((nap < IDLE_S ? nap : IDLE_S))
    fi
    sleep "$nap"
  done
}
# The token reaches git through its environment only: never on argv, never in .git/config.
git_auth(){ local t; t=$(cat "$S/VL_GIT_TOKEN" 2>/dev/null); [ -z "$t" ] && { git "$@"; return; }
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader \
  GIT_CONFIG_VALUE_0="Authorization: Basic $(printf 'x-access-token:%s' "$t" | base64 -w0)" git "$@"; }
# Slim images (the pytorch runtime ones among them) have no git: the commit's archive, else apt-get.
archive(){ [ -n "$ARCHIVE" ] || return 1; log "no git in the image: fetching the commit's archive"
  rm -rf repo.part && VL_GIT_TOKEN=$(cat "$S/VL_GIT_TOKEN" 2>/dev/null) py vast.shell.archive "$ARCHIVE" "$W/repo.part" \
    && mv repo.part repo && echo "$SHA" > repo/.vl-commit; }
apt_git(){ command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || return 1
  log "no git in the image: installing it with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null 2>&1; }
fetch_code(){
  [ "$(cat repo/.vl-commit 2>/dev/null)" = "$SHA" ] && return
  command -v git >/dev/null || archive || apt_git || {
    log "no git in the image and it could not be installed (needs root and apt-get; or a GitHub remote or code.archive_url)"
    return 1; }
  [ -f repo/.vl-commit ] && return  # the archive above brought it
  # A container stopped mid-fetch (outbid) starts this again on what it left: its locks, a repo without the commit.
  [ -d repo/.git ] || git init -q repo || return 1
  rm -f repo/.git/*.lock
  git -C repo remote get-url origin >/dev/null 2>&1 || git -C repo remote add origin "$REPO" || return 1
  git -C repo cat-file -e "$SHA^{commit}" 2>/dev/null \
    || git_auth -C repo fetch -q --depth 1 origin "$SHA" || git_auth -C repo fetch -q origin || return 1
  git -C repo checkout -q --detach "$SHA" || { log "commit $SHA not found in $REPO"; return 1; }
}
# obstore for an s3:// store, into .vl/py: nothing of it reaches the image's or the user's environment.
store_lib(){ case $STORE in s3://*) ;; *) return 0 ;; esac; [ -d "$V/py/obstore" ] && return 0
  # into a side folder, moved in whole: an install a stop cut short is not taken for a complete one
  rm -rf "$V/py.part" && python3 -m pip install -q --no-deps --target "$V/py.part" obstore==0.12.1 >/dev/null 2>&1 \
    && rm -rf "$V/py" && mv "$V/py.part" "$V/py" && return
  log "could not install obstore==0.12.1 for the outputs store (it needs python3 >= 3.11 and pip in the image)"; return 1; }
trap finish EXIT
trap 'SIG=TERM; exit 143' TERM
trap 'SIG=INT; exit 130' INT
trap 'SIG=HUP; exit 129' HUP
if [ "${VL_WATCHDOG:-1}" = 1 ]; then set -m; watchdog & echo $! > watchdog.pid; set +m; fi
[ "${VL_TRAP:-1}" = 1 ] || trap - EXIT
log "launch $L commit $SHA attempt $ATTEMPT deadline $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE") ($WHY)"
[ "$AUTO" = 1 ] || log "WARNING: auto-shutdown is off: the instance runs until the deadline or the idle limit"
rm -rf "$V/teardown" "$V/teardown.rc"
store_lib & LIB=$!
[ -f ./done ] && { log "already finished: tearing down"; exit 0; }
fetch_code; fetched=$?
rm -f "$S/VL_GIT_TOKEN"  # fetched or not: nothing after this needs it
[ "$fetched" = 0 ] || exit 1
if ! { cd repo && { set +u; true; }; }; then log "setup failed"; exit 1; fi
wait "$LIB" || exit 1; LIB=
# The agent: with a store it syncs; without one it only spares the teardown an interpreter's start-up.
# fd 4 keeps the fifo open here, so that a line written before the agent opened it is not lost.
if [ -n "$STORE" ]; then
  [ -f "$V/pulled" ] || { py store.objects pull "$W" "$L" && touch "$V/pulled"; } || { log "could not read the outputs store"; exit 1; }
fi
if [ -n "$STORE" ] || [ "$AUTO" = 1 ]; then
  rm -f "$V/agent.fifo" && mkfifo "$V/agent.fifo" && exec 4<>"$V/agent.fifo" \
    && { set -m; py vast.shell.agent serve "$W" & AGENT=$!; set +m; }
fi
bash "$W/run_stages.sh"
