"""A real S3 API server on loopback (moto's server mode) for the outputs store: a process of its own,
its own port, a bucket and a key pair; the tests talk to it through the same library as the launcher."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "vl-test-access-key-4f1e"
SECRET_KEY = "vl-test-secret-key-9a7c3b0d"
REGION = "us-east-1"


def missing_parts() -> list[str]:
    return [] if importlib.util.find_spec("moto") and importlib.util.find_spec("flask") else ["moto[server] (the dev extra)"]


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen
    buckets: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict:
        """What a user exports for an S3-compatible store (the secrets travel only in the environment)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
        )

    def bucket(self, name: str) -> str:
        """A new empty bucket; its s3:// URL."""
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server(log: Path, timeout: float = 60) -> S3Server:
    """moto's server on a free loopback port, answering before this returns."""
    for _ in range(5):  # a port taken between the probe and the bind: another one
        port = _free_port()
        out = open(log, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own environment: nothing of the test that started it (state dirs, keys) marks it as that test's
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "HOME": "/tmp",
                "MOTO_ALLOW_NONEXISTENT_REGION": "true",
            },
        )
        out.close()
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
                return S3Server(endpoint, proc)
            except OSError:
                time.sleep(0.1)
        proc.kill()
        proc.wait(10)
    raise RuntimeError(f"moto's S3 server did not start (see {log})")
