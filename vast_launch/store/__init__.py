"""The outputs store, as the launcher sees it: where a launch's outputs, log, events and result.json live
after its instance is gone (`<url>/<launch-id>/`, protocol.STORE_*).

`objects.py` moves the bytes (the instance runs it too); this module adds what only the launcher does:
the spec a launch was rented with (kept in its ledger row), credentials from this machine's environment
or AWS profile, and reading a launch back: its result, log and events, and `pull` with progress.
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import protocol
from ..errors import UserError

STORE_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class StoreSpec:
    url: str
    endpoint_url: Optional[str] = None
    region: Optional[str] = None

    @property
    def is_dir(self) -> bool:
        return self.url.startswith("file:")

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def of_row(cls, row: dict) -> Optional["StoreSpec"]:
        """The store a launch was rented with (its ledger row), or None."""
        extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
        spec = extra.get("store") if isinstance(extra.get("store"), dict) else None
        if not spec or not spec.get("url"):
            return None
        return cls(spec["url"], spec.get("endpoint_url"), spec.get("region"))


def credentials(environ: Optional[dict] = None) -> dict:
    """The S3 keys from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), else
    from the named profile (AWS_PROFILE, else `default`) of ~/.aws/credentials; {} when there are none."""
    env = os.environ if environ is None else environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {k: env[k] for k in STORE_SECRETS if env.get(k)}
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    section = parser[env["AWS_PROFILE"]] if env.get("AWS_PROFILE") in parser else parser["default"] if "default" in parser else {}
    found = {
        "AWS_ACCESS_KEY_ID": section.get("aws_access_key_id"),
        "AWS_SECRET_ACCESS_KEY": section.get("aws_secret_access_key"),
        "AWS_SESSION_TOKEN": section.get("aws_session_token"),
    }
    return {k: v.strip() for k, v in found.items() if v and v.strip()} if found["AWS_ACCESS_KEY_ID"] else {}


def problems(spec: StoreSpec, reaches_this_machine: bool, who: str = "the target's instances") -> list[str]:
    """Why a launch could not use this store, one line each (for `check` and every launch); a directory
    store only where the instances run on this machine."""
    found = []
    if spec.url.startswith("s3:"):
        if not credentials():
            found.append(
                f"outputs.url is {spec.url} but there are no S3 credentials: export AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials)"
            )
    elif spec.is_dir and not reaches_this_machine:
        found.append(
            f"outputs.url is {spec.url}, a directory on this machine, which {who} cannot reach: "
            "use an s3:// bucket (AWS, R2, B2, MinIO...)"
        )
    return found


def open_spec(spec: StoreSpec):
    from .objects import StoreError, open_store

    creds = credentials()
    fields = {"AWS_ACCESS_KEY_ID": "access_key_id", "AWS_SECRET_ACCESS_KEY": "secret_access_key", "AWS_SESSION_TOKEN": "session_token"}
    try:
        return open_store(spec.url, spec.endpoint_url, spec.region, {fields[k]: v for k, v in creds.items()})
    except StoreError as exc:
        raise UserError(str(exc)) from None


class LaunchOutputs:
    """One launch's objects in its store."""

    def __init__(self, spec: StoreSpec, launch_id: str):
        self.spec, self.launch_id = spec, launch_id
        self.prefix = launch_id + "/"
        self._store = None

    @property
    def store(self):
        if self._store is None:
            self._store = open_spec(self.spec)
        return self._store

    def where(self, key: str = "") -> str:
        return f"{self.spec.url.rstrip('/')}/{self.prefix}{key}"

    def _get(self, key: str) -> Optional[bytes]:
        from .objects import StoreError

        try:
            return self.store.get_bytes(self.prefix + key)
        except StoreError as exc:
            raise UserError(str(exc)) from None

    def result(self) -> Optional[dict]:
        data = self._get(protocol.STORE_RESULT)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def log_text(self, attempt: int = 1) -> Optional[str]:
        data = self._get(protocol.store_log(attempt))
        return None if data is None else data.decode("utf-8", errors="replace")

    def events(self) -> list[str]:
        data = self._get(protocol.STORE_EVENTS)
        return [] if data is None else data.decode("utf-8", errors="replace").splitlines()

    def outputs(self, stage: Optional[str] = None) -> list[tuple[str, int]]:
        """(path under out/, size) of what the stages wrote; with `stage`, only under `out/<stage>/`."""
        from .objects import StoreError

        base = self.prefix + protocol.STORE_OUT
        try:
            found = self.store.list(base + (stage.strip("/") + "/" if stage else ""))
        except StoreError as exc:
            raise UserError(str(exc)) from None
        return [(key[len(base) :], size) for key, size in found]

    def local_out(self) -> Optional[Path]:
        """For a directory store: the outputs folder itself (nothing to download)."""
        if not self.spec.is_dir:
            return None
        path = Path(self.store.root) / self.launch_id / "out"
        return path if path.is_dir() else None

    def pull(
        self,
        dest: Path,
        stage: Optional[str] = None,
        progress: Optional[Callable[[int, int, str], None]] = None,
        keep: Optional[Callable[[str], bool]] = None,
    ) -> tuple[int, int]:
        """Download the outputs (or one stage's, or those `keep(path)` wants) into `dest`; (files, bytes).
        `progress(done, total, name)` as the bytes arrive."""
        from .objects import StoreError

        files = [(rel, size) for rel, size in self.outputs(stage) if keep is None or keep(rel)]
        total, done = sum(size for _, size in files), 0
        for rel, size in files:
            target = dest.joinpath(*[p for p in rel.split("/") if p not in ("", ".", "..")])

            def step(n: int, rel=rel) -> None:
                nonlocal done
                done += n
                if progress:
                    progress(done, total, rel)

            try:
                self.store.get_file(self.prefix + protocol.STORE_OUT + rel, target, progress=step)
            except StoreError as exc:
                raise UserError(str(exc)) from None
        return len(files), total


REPORT_INPUTS = ("eval.json", "eval_val.json", "result.json", "metrics.jsonl")


def report_inputs(spec: StoreSpec, launch_id: str, cache: Path) -> Optional[Path]:
    """A folder with what `report` reads of a launch's outputs (evaluations, metrics, offline W&B runs, not
    the checkpoints): the directory store's own, or those files downloaded into `cache`."""
    found = LaunchOutputs(spec, launch_id)
    if spec.is_dir:
        return found.local_out()
    wanted = lambda rel: rel.rsplit("/", 1)[-1] in REPORT_INPUTS or rel.endswith(".wandb")  # noqa: E731
    n, _ = found.pull(cache, keep=wanted)
    return cache if n else None


def record_stored_stages(ledger, row: dict) -> None:
    """A running launch that nobody follows: its stage starts and ends, from the events in its store (they
    are synced at every stage start and end), into the ledger, so status shows its stage and cost splits."""
    spec = StoreSpec.of_row(row)
    if spec is None:
        return
    for line in LaunchOutputs(spec, row["id"]).events():
        ev = protocol.parse_stage_line(line)
        if ev is None:
            continue
        if ev.phase == "start":
            ledger.record_stage(row["id"], ev.name, ev.at)
        else:
            ledger.record_stage(row["id"], ev.name, ev.start or ev.at, ev.at, ev.rc)


def attempt_of(row: dict) -> int:
    return int((row.get("extra") if isinstance(row.get("extra"), dict) else {}).get("attempt") or 1)


def attempt_log(row: dict) -> tuple[Optional[str], Optional[str]]:
    """(the log of the launch's current attempt, where in its outputs store); (None, None) without a store
    or a log. Raises UserError when the store cannot be read."""
    spec = StoreSpec.of_row(row)
    if spec is None:
        return None, None
    found, attempt = LaunchOutputs(spec, row["id"]), attempt_of(row)
    text = found.log_text(attempt)
    return (text, found.where(protocol.store_log(attempt))) if text is not None else (None, None)


def attempt_result(row: dict) -> Optional[dict]:
    """The result.json that the launch's current attempt left in its outputs store; None when there is no
    store, no result, or only an earlier attempt's. Raises UserError when the store cannot be read."""
    spec = StoreSpec.of_row(row)
    if spec is None:
        return None
    doc = LaunchOutputs(spec, row["id"]).result()
    if not doc or int(doc.get("attempt") or 1) != attempt_of(row):
        return None
    return doc
