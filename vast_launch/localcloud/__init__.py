"""An embedded Vast-compatible REST server that rents out this machine.

The real `vastai` SDK and CLI talk to it unchanged through `VAST_URL`.
"""

from .server import LocalCloud

__all__ = ["LocalCloud"]
