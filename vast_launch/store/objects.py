"""The outputs store's objects: a directory (`file:///path`) or an S3-compatible bucket (`s3://bucket/prefix`).

Shipped to the instance and run there by its own Python (`python3 -E -S -m vast_launch.store.objects`),
so it imports only the standard library, `protocol`, and obstore for s3:// (installed for the instance
alone: see README "Outputs store"). The launcher uses the same classes. Keys are relative to the URL's
prefix; a launch's objects are under `<launch id>/` (protocol.STORE_*).

Every write is whole or absent: a directory store writes a temporary file and renames it, a bucket's
PUT (or multipart upload) appears at once.
"""

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

OBSTORE_PIN = "obstore==0.12.1"
PART_BYTES = 16 << 20  # multipart chunk for large files
SMALL_BYTES = 8 << 20  # read whole and PUT once below this


class StoreError(Exception):
    """The store could not be reached, or refused (one line, with the cause)."""


class DirStore:
    """A directory on a machine both the launcher and the instances reach (the local cloud)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"not a key: {key!r}")
        return self.root.joinpath(*parts)

    def put_file(self, key: str, src: Path) -> int:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".put-")
        try:
            with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
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
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".put-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> Optional[bytes]:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def get_file(self, key: str, dest: Path, progress: Optional[Callable[[int], None]] = None) -> None:
        src = self._path(key)
        with open(src, "rb") as f, _atomic_out(dest) as out:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                if progress:
                    progress(len(chunk))

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix` (a key ending in '/')."""
        base = self.root.joinpath(*[p for p in prefix.split("/") if p])
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith(".put-"):
                found.append((path.relative_to(self.root).as_posix(), path.stat().st_size))
        return found


class S3Store:
    """A bucket of any S3-compatible service (AWS S3, R2, B2, Wasabi, MinIO), through obstore."""

    def __init__(self, bucket: str, prefix: str, endpoint: Optional[str], region: Optional[str], credentials: dict):
        try:
            from datetime import timedelta

            from obstore.store import S3Store as _S3
        except ImportError as exc:
            raise StoreError(f"the outputs store needs {OBSTORE_PIN} (pip install {OBSTORE_PIN}): {exc}")
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        options = {"timeout": timedelta(seconds=120), "connect_timeout": timedelta(seconds=10)}
        if endpoint and endpoint.startswith("http://"):
            options["allow_http"] = True
        config = {k: v for k, v in credentials.items() if v}
        if endpoint:
            config["endpoint"] = endpoint
        self.store = _S3(
            bucket,
            prefix=prefix or None,
            region=region or "us-east-1",
            client_options=options,
            retry_config={"max_retries": 4, "retry_timeout": timedelta(seconds=60)},
            **config,
        )

    def _call(self, what: str, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except Exception as exc:  # obstore raises its own error types; one line with the cause
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"{self.url}: {what}: {first[:300]}") from None

    def put_file(self, key: str, src: Path) -> int:
        import obstore

        size = Path(src).stat().st_size
        with open(src, "rb") as f:
            if size < SMALL_BYTES:
                data = f.read()
                self._call(f"put {key}", lambda: obstore.put(self.store, key, data))
                return len(data)
            self._call(f"put {key}", lambda: obstore.put(self.store, key, f, chunk_size=PART_BYTES, max_concurrency=8))
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        import obstore

        self._call(f"put {key}", lambda: obstore.put(self.store, key, data))

    def get_bytes(self, key: str) -> Optional[bytes]:
        import obstore

        try:
            return bytes(self._call(f"get {key}", lambda: obstore.get(self.store, key).bytes()))
        except FileNotFoundError:
            return None

    def get_file(self, key: str, dest: Path, progress: Optional[Callable[[int], None]] = None) -> None:
        import obstore

        def fetch():
            with _atomic_out(dest) as out:
                for chunk in obstore.get(self.store, key).stream(min_chunk_size=1 << 20):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))

        self._call(f"get {key}", fetch)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        import obstore

        def walk():
            return [(m["path"], int(m["size"])) for batch in obstore.list(self.store, prefix=prefix) for m in batch]

        return sorted(self._call(f"list {prefix}", walk))


Store = Union[DirStore, S3Store]


class _atomic_out:
    """A file written under a temporary name beside `dest`, renamed into place only when whole."""

    def __init__(self, dest: Path):
        self.dest = Path(dest)

    def __enter__(self):
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.", suffix=".part")
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, kind, value, tb) -> None:
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.dest)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def open_store(url: str, endpoint: Optional[str] = None, region: Optional[str] = None, credentials: Optional[dict] = None) -> Store:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{url}: a file:// URL names a path on this machine (file:///path)")
        return DirStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"{url}: no bucket (s3://bucket/prefix)")
        return S3Store(parts.netloc, parts.path.strip("/"), endpoint, region, credentials or {})
    raise StoreError(f"{url}: the outputs store is s3://bucket/prefix or file:///path")


# --- what the instance syncs --------------------------------------------------------------------
def sync_plan(workdir: Path) -> Iterator[tuple[str, Path]]:
    """(key under the launch's prefix, file) for everything a sync sends: the outputs, then the events
    and the log (protocol.STORE_*). Only regular files; never one still being written (NOT_SYNCED_SUFFIXES)."""
    out = workdir / "out"
    if out.is_dir():
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.endswith(protocol.NOT_SYNCED_SUFFIXES):
                yield protocol.STORE_OUT + path.relative_to(out).as_posix(), path
    try:
        attempt = int(json.loads((workdir / protocol.HELPERS_DIR / "run.json").read_text()).get("attempt") or 1)
    except (OSError, ValueError):
        attempt = 1
    for key, name in ((protocol.STORE_EVENTS, protocol.EVENTS_FILE), (protocol.store_log(attempt), protocol.BOOT_LOG)):
        if (workdir / name).is_file():
            yield key, workdir / name


class Syncer:
    """Sends what changed since the last sync (size and mtime, remembered in the work dir)."""

    def __init__(self, store: Store, launch_id: str, workdir: Path):
        self.store, self.prefix, self.workdir = store, launch_id.rstrip("/") + "/", Path(workdir)
        self.memo = self.workdir / protocol.HELPERS_DIR / "synced.json"
        try:
            self.sent: dict = json.loads(self.memo.read_text())
        except (OSError, ValueError):
            self.sent = {}

    def push(self, until: Optional[float] = None, stop: Optional[Callable[[], bool]] = None) -> tuple[int, int, bool]:
        """(files, bytes) sent, and whether everything was; stops before a file once `until` passed or
        `stop()` says so."""
        files = sent_bytes = 0
        whole = True
        for key, path in list(sync_plan(self.workdir)):
            if (until is not None and time.time() >= until) or (stop is not None and stop()):
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
        return files, sent_bytes, whole

    def put_result(self, doc: dict) -> None:
        self.store.put_bytes(self.prefix + protocol.STORE_RESULT, json.dumps(doc, indent=1).encode())

    def pull(self) -> int:
        """On a new instance of the same launch: the outputs and events a previous one stored. Returns files."""
        n = 0
        for key, _ in self.store.list(self.prefix + protocol.STORE_OUT):
            rel = key[len(self.prefix + protocol.STORE_OUT) :]
            self.store.get_file(key, self.workdir / "out" / rel)
            n += 1
        events = self.store.get_bytes(self.prefix + protocol.STORE_EVENTS)
        if events is not None:
            (self.workdir / protocol.EVENTS_FILE).write_bytes(events)
            n += 1
        for key, path in sync_plan(self.workdir):  # what came from the store need not go back
            st = path.stat()
            self.sent[key] = [st.st_size, st.st_mtime_ns]
        self._remember()
        return n

    def _remember(self) -> None:
        with _atomic_out(self.memo) as f:  # the final sync may overlap a periodic one still sending a file
            f.write(json.dumps(dict(self.sent)).encode())


# --- the instance's side ------------------------------------------------------------------------
def instance_store(workdir: Path) -> Optional[Store]:
    """The store the bootstrap was rendered with (`.vl/store.json`), its credentials from `.vl/secrets/`."""
    helpers = Path(workdir) / protocol.HELPERS_DIR
    try:
        spec = json.loads((helpers / "store.json").read_text())
    except (OSError, ValueError):
        return None
    if not spec.get("url"):
        return None
    sys.path.insert(0, str(helpers / "py"))  # obstore, installed for the instance alone
    secrets = helpers / "secrets"
    creds = {}
    for name, field in (
        ("AWS_ACCESS_KEY_ID", "access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
        ("AWS_SESSION_TOKEN", "session_token"),
    ):
        try:
            creds[field] = (secrets / name).read_text().strip()
        except OSError:
            pass
    return open_store(spec["url"], spec.get("endpoint_url"), spec.get("region"), creds)


def main(argv: Optional[list[str]] = None) -> int:
    """`push` (what changed), `pull` (a previous instance's outputs); in the work dir given."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("push", "pull"):
        print("usage: objects.py push|pull WORKDIR LAUNCH_ID", file=sys.stderr)
        return 2
    what, workdir, launch_id = argv
    try:
        store = instance_store(Path(workdir))
        if store is None:
            return 0
        syncer = Syncer(store, launch_id, Path(workdir))
        if what == "pull":
            print(f"[vast-launch] pulled {syncer.pull()} file(s) of an earlier attempt from {store.url}")
        else:
            files, sent, _ = syncer.push()
            print(f"[vast-launch] synced {files} file(s), {sent / 1e6:.1f} MB to {store.url}")
    except (StoreError, OSError) as exc:
        print(f"[vast-launch] outputs store: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
