"""Fetch the launch's commit as a tarball, for an image without git.

    python3 -E -S -m vast_launch.vast.shell.archive URL DEST

The token (a private repository's) comes from the environment of this process alone (VL_GIT_TOKEN) and
is never sent on to a redirect's host (GitHub's tarball redirects to another host). One top-level folder
in the archive (GitHub's `owner-repo-sha/`) is stripped. A member that would land outside DEST, or that is
not a file, folder or symlink, refuses the whole archive.
"""

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
            req.remove_header("Authorization")
        return req


def safe_members(tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    tops = {m.name.split("/")[0] for m in members}
    if len(tops) == 1 and any("/" in m.name for m in members):
        members = [m for m in members if "/" in m.name]
        for m in members:
            m.name = m.name.split("/", 1)[1]
    for m in members:
        if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir() or m.issym()):
            raise ValueError(f"unsafe archive member {m.name}")
    return members


def fetch(url: str, dest: str) -> None:
    token = os.environ.get("VL_GIT_TOKEN")
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    data = urllib.request.build_opener(NoAuthOnRedirect).open(req, timeout=300).read()
    tf = tarfile.open(fileobj=io.BytesIO(data))
    members = safe_members(tf)
    tf.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        fetch(*argv)
    except (OSError, ValueError, tarfile.TarError) as exc:
        print(f"[vast-launch] archive {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
