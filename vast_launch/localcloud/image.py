"""What an instance's image gives its processes: Vast's environment variables, the image's Python (with or
without the `vastai` CLI), and a slim image's system commands (without git)."""

from __future__ import annotations

import importlib.util
import os
import sys
import venv
from pathlib import Path

from .containers import MARKER_ENV
from .instance import Instance

THREAD_CAPS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def container_env(inst: Instance, public_url: str, bin_dir: str) -> dict:
    """The environment an instance's processes start with: as Vast sets it, with the image's commands on PATH."""
    system = ["/usr/local/bin", "/usr/bin", "/bin"] if inst.has_git else [str(system_without_git(inst))]
    path = os.pathsep.join([str(image_python(inst, bin_dir)), *system])
    env = {
        "PATH": path,
        "HOME": str(inst.workdir),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "CONTAINER_ID": str(inst.id),
        "CONTAINER_API_KEY": inst.api_key,
        "VAST_CONTAINERLABEL": f"C.{inst.id}",
        "PUBLIC_IPADDR": "127.0.0.1",
        "GPU_COUNT": str(inst.offer["num_gpus"]),
        "DATA_DIRECTORY": str(inst.workdir),
        "VAST_URL": public_url,
        "VASTAI_NO_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    # The instances share this machine's cores: a thread cap set for this machine applies to them too, as a
    # CPU quota would (torch's OpenMP threads spin-wait, so 2-thread trainings on busy shared cores run 5x slower).
    env.update({k: os.environ[k] for k in THREAD_CAPS if k in os.environ})
    env.update(inst.env)
    if inst.layers_off:  # a fault: the bootstrap arms neither its trap nor its watchdog
        env.update(VL_TRAP="0", VL_WATCHDOG="0")
    env[MARKER_ENV] = inst.marker
    return env


def image_python(inst: Instance, launcher_bin: str) -> Path:
    """The image's Python, in the container's own files: `python`, `python3` and `pip` of a virtualenv
    that sees this host's packages (as a PyTorch image has torch), or only pip (a slim Python image), so
    `code.setup` installs into the container and never into the launcher's environment; `vastai` unless
    the image lacks it."""
    env_dir = inst.workdir / ".image-python"
    bin_dir = env_dir / "bin"
    if (bin_dir / "python3").exists():
        return bin_dir
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    if inst.has_host_packages:
        seen = [p for p in sys.path if os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages")]
    else:
        seen = [str(_pip_alone(env_dir))]
    (next((env_dir / "lib").glob("python*")) / "site-packages" / "host-packages.pth").write_text("\n".join(seen) + "\n")
    for name in ("pip", "pip3"):
        (bin_dir / name).write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
        os.chmod(bin_dir / name, 0o700)
    vastai = Path(launcher_bin) / "vastai"
    if inst.has_vastai_cli and vastai.exists():
        os.symlink(vastai, bin_dir / "vastai")
    _owner_only(env_dir)
    return bin_dir


def _pip_alone(env_dir: Path) -> Path:
    """A directory holding this host's pip and nothing else (pip vendors what it needs)."""
    d = env_dir / "pip-alone"
    d.mkdir()
    spec = importlib.util.find_spec("pip")
    if spec and spec.origin:
        os.symlink(Path(spec.origin).parent, d / "pip")
    return d


def _owner_only(top: Path) -> None:
    """venv writes its scripts 0644/0755 whatever the umask; the instance's files live in the owner-only state dir."""
    for path in [top, *top.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, path.stat().st_mode & 0o700)


def system_without_git(inst: Instance) -> Path:
    """A slim image's system commands: this host's, less git and apt (so nothing can install git)."""
    d = inst.workdir / ".sysbin"
    if d.is_dir():
        return d
    d.mkdir()
    left_out = ("git", "apt", "dpkg", "dnf", "yum", "apk")
    for src in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in os.scandir(src) if os.path.isdir(src) else ():
            if entry.name.startswith(left_out) or os.path.lexists(d / entry.name):
                continue
            os.symlink(entry.path, d / entry.name)
    return d
