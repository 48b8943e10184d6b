"""The state dir (`$VAST_LAUNCH_HOME`): where it is, and that what goes in it is owner-only from creation.

Kept apart from ledger.py so that start-up (the umask) and `init` need no SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def default_home() -> Path:
    if os.environ.get("VAST_LAUNCH_HOME"):
        return Path(os.environ["VAST_LAUNCH_HOME"])
    from platformdirs import user_state_dir

    return Path(user_state_dir("vast-launch"))


_USER_UMASK: Optional[int] = None


def keep_new_files_private() -> None:
    """From here on every file this process and its children create (reports, run outputs, the local cloud's
    instances and clones, W&B files) is owner-only from creation: the umask gains 077."""
    global _USER_UMASK
    old = os.umask(0o077)
    if _USER_UMASK is None:
        _USER_UMASK = old
    os.umask(old | 0o077)


def user_file_mode() -> int:
    """The mode a file meant for the user's own tree gets under the user's umask (not ours)."""
    return 0o666 & ~(_USER_UMASK if _USER_UMASK is not None else 0o022)


def private_dir(path: Path) -> Path:
    """A state directory only its owner can read: it and every ancestor it creates are made 0700 (mkdir's
    parents=True would give the ancestors the umask's mode), never chmodded open."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
    return missing[0] if missing else path
