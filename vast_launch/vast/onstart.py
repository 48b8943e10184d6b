"""Render the instance's bootstrap for one launch, and the short onstart that unpacks it.

Vast caps args+onstart at 4,096 characters, so the bootstrap (vast_launch/vast/shell/bootstrap.sh with the
stage runner and the instance's Python helpers inside) travels zlib+base64'd in the create call's env, in
`VL_BOOT_nn` entries of at most 256 characters (Vast's limit per entry; 32,768 for all). Nothing rendered
holds a secret.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import protocol
from ..errors import UserError
from ..protocol import LAUNCH_ID
from ..store.objects import OBSTORE_PIN

SCRIPTS = Path(__file__).resolve().parent / "shell"  # package data: the launcher works installed from a wheel
TEMPLATE = SCRIPTS / "bootstrap.sh"
RUNNER = SCRIPTS / "run_stages.sh"
# Vast accepts args+onstart up to 4,096 characters (docs elsewhere say 4,048); keep a margin.
MAX_ONSTART_CHARS = 4000
# Vast: each env entry (key and value) at most 256 characters, all of them 32,768; keep room for the rest.
ENV_ENTRY_CHARS = 256
MAX_BOOT_ENV_CHARS = 24_000
BOOT_ENV_PREFIX = "VL_BOOT_"
PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
PACKAGE = Path(__file__).resolve().parent.parent  # vast_launch/
# The Python the instance runs, as package data: written into .vl/ as this same package layout, so the
# helpers import each other as they do here (`python3 -E -S -m vast_launch.vast.shell.agent`).
SHIPPED = ("protocol.py", "store/objects.py", "vast/shell/agent.py", "vast/shell/archive.py")
HEREDOC_END = "VL_PY"


@dataclass
class OnstartSpec:
    launch_id: str
    commit: str
    repo: str
    group: str
    deadline: int
    profile: Optional[str]
    config_path: str
    stages: list[tuple[str, str]]  # (name, command)
    setup: str
    auto_shutdown: bool
    idle_seconds: int = 0  # 0: no idle limit
    archive: str = ""  # the commit's tarball, for an image without git
    store: dict = field(default_factory=dict)  # url, endpoint_url, region: the outputs store ({} none)
    final_sync_seconds: int = 120
    sync_every_seconds: float = 0
    ack_wait_seconds: int = 0  # without a store: how long to wait for a following launcher's acknowledgement


def render_bootstrap(spec: OnstartSpec) -> str:
    """The full bootstrap script, filled in one pass: a value can never create a placeholder."""
    if not LAUNCH_ID.match(spec.launch_id):
        raise RuntimeError(f"launch id {spec.launch_id!r} is not a slug")  # it names paths and a comment line
    for name, cmd in spec.stages:
        if "\t" in cmd or "\n" in cmd or "VL_STAGES" in cmd:
            raise UserError(f"stages.{name}.command: must be one line without tabs")
    values = {
        "LAUNCH_ID": shlex.quote(spec.launch_id),
        "COMMIT": shlex.quote(spec.commit),
        "REPO": shlex.quote(spec.repo),
        "ARCHIVE": shlex.quote(spec.archive),
        "DEADLINE": str(int(spec.deadline)),
        "AUTO": "1" if spec.auto_shutdown else "0",
        "IDLE_S": str(int(spec.idle_seconds)),
        "GROUP": shlex.quote(spec.group),
        "PROFILE": shlex.quote(spec.profile or ""),
        "CONFIG": shlex.quote(spec.config_path),
        "STAGES_TSV": "\n".join(f"{name}\t{cmd}" for name, cmd in spec.stages),
        "SETUP": spec.setup.strip() or "true",
        "RUN_STAGES": RUNNER.read_text().rstrip("\n"),
        "STORE": shlex.quote(spec.store.get("url") or ""),
        "FINAL_S": str(int(spec.final_sync_seconds)),
        "SECRET_NAMES": " ".join(protocol.INSTANCE_SECRETS),
        "OBSTORE_PIN": shlex.quote(OBSTORE_PIN),
        "HELPERS": render_helpers(spec),
    }
    template = TEMPLATE.read_text()
    missing = set(PLACEHOLDER.findall(template)) - set(values)
    if missing:
        raise RuntimeError(f"bootstrap template has unfilled placeholders {sorted(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_helpers(spec: OnstartSpec) -> str:
    """Shell that writes the instance's Python helpers and their settings into .vl/ ($V)."""
    launch = {
        "launch_id": spec.launch_id,
        "commit": spec.commit,
        "auto_shutdown": spec.auto_shutdown,
        "final_sync_timeout_s": spec.final_sync_seconds,
        "sync_every_s": spec.sync_every_seconds,
        "ack_wait_s": 0 if spec.store.get("url") else spec.ack_wait_seconds,
    }
    files = {"launch.json": json.dumps(launch), "store.json": json.dumps(spec.store)}
    files.update({f"vast_launch/{rel}": shipped_source(PACKAGE / rel) for rel in SHIPPED})
    dirs = sorted({str(Path(rel).parent) for rel in files if "/" in rel})
    inits = sorted({f"{d}/__init__.py" for d in dirs if d.startswith("vast_launch")} | {"vast_launch/__init__.py"})
    lines = ["(umask 077; mkdir -p " + " ".join(f'"$V/{d}"' for d in dirs) + " && touch " + " ".join(f'"$V/{i}"' for i in inits) + ")"]
    for rel, text in files.items():
        if any(line == HEREDOC_END for line in text.splitlines()):
            raise RuntimeError(f"{rel} holds the line {HEREDOC_END}, which ends its heredoc")
        lines += [f"cat > \"$V/{rel}\" <<'{HEREDOC_END}'", text.rstrip("\n"), HEREDOC_END]
    return "\n".join(lines)


def shipped_source(path: Path) -> str:
    """A helper's code as the instance gets it: the same syntax tree without its docstrings (they would
    take a fifth of the env Vast allows), comments and formatting."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def pack_bootstrap(bootstrap: str) -> dict[str, str]:
    """The bootstrap as env entries VL_BOOT_00, VL_BOOT_01, ... (zlib, base64, in order)."""
    packed = base64.b64encode(zlib.compress(bootstrap.encode(), 9)).decode()
    width = ENV_ENTRY_CHARS - len(BOOT_ENV_PREFIX) - 2
    chunks = [packed[i : i + width] for i in range(0, len(packed), width)]
    return {f"{BOOT_ENV_PREFIX}{i:02d}": chunk for i, chunk in enumerate(chunks)}


def unpack_bootstrap(env: dict[str, str]) -> str:
    keys = sorted(k for k in env if k.startswith(BOOT_ENV_PREFIX))
    return zlib.decompress(base64.b64decode("".join(env[k] for k in keys))).decode()


def wrap_onstart(launch_id: str) -> str:
    """The onstart: unpack the bootstrap from the env into the launch's work dir and run it."""
    return "\n".join(
        [
            "#!/bin/bash",
            f"# vast-launch onstart for launch {launch_id}: the bootstrap travels zlib+base64 in the env",
            "# (VL_BOOT_nn), as Vast caps the onstart at 4 KB. Vast runs this on every container start.",
            f'W=${{DATA_DIRECTORY:-$HOME}}/vl-{shlex.quote(launch_id)}; mkdir -p "$W" || exit 1',
            'python3 -S -c \'import base64,os,sys,zlib;k=sorted(x for x in os.environ if x.startswith("VL_BOOT_"));'
            'sys.stdout.buffer.write(zlib.decompress(base64.b64decode("".join(os.environ[x] for x in k))))\' '
            '> "$W/bootstrap.sh" || exit 1',
            'exec bash "$W/bootstrap.sh"',
            "",
        ]
    )


def render_onstart(spec: OnstartSpec) -> tuple[str, str, dict[str, str]]:
    """(onstart as sent to the provider, the bootstrap it unpacks, the env entries carrying it)."""
    bootstrap = render_bootstrap(spec)
    onstart = wrap_onstart(spec.launch_id)
    boot_env = pack_bootstrap(bootstrap)
    size = sum(len(k) + len(v) for k, v in boot_env.items())
    if len(onstart) > MAX_ONSTART_CHARS or size > MAX_BOOT_ENV_CHARS:
        raise UserError(
            f"the rendered bootstrap takes {size} characters of env once compressed, over the "
            f"{MAX_BOOT_ENV_CHARS} it may use of Vast's 32,768: shorten stages.*.command or code.setup"
        )
    return onstart, bootstrap, boot_env


def assert_no_secrets(text: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        if value and len(value) >= 4 and value in text:
            raise RuntimeError(f"secret {name} would leak into the onstart text")
