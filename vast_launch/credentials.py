"""Where the Vast key is found. Kept apart from vast.py so `check` and `cost` need no SDK import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def find_api_key() -> Optional[str]:
    """The account key, in the order the vastai client itself uses (never printed)."""
    if os.environ.get("VAST_API_KEY"):
        return os.environ["VAST_API_KEY"]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for path in (Path(xdg) / "vastai" / "vast_api_key", Path.home() / ".vast_api_key"):
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
    return None
