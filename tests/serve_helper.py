"""A real ``candor serve`` for a test module, and boto3 clients with keys issued on its database
(used by test_doors.py and test_replay.py; not a test module itself)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from postgres_helper import store_url

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"
CANDOR = [sys.executable, "-m", "candor.cli"]


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(data: Path, log_dir: Path, *args: str, port: int | None = None) -> Iterator[str]:
    """``candor serve`` on ``data`` until the block ends; yields its URL once it answers."""
    import boto3
    from botocore.config import Config

    port = port or free_port()
    out, err = log_dir / f"serve-{port}.out", log_dir / f"serve-{port}.err"
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", "2", *args],
                            stdout=out.open("w"), stderr=err.open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to ~2 minutes: /healthz answers once the server listens
            assert proc.poll() is None, err.read_text()
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("candor serve did not come up:\n" + err.read_text())
        from candor.api.keys import KeyStore

        key, secret = KeyStore.open(data, store_url()).create("probe", "general")
        probe = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                             aws_access_key_id=key.access_key_id,
                             aws_secret_access_key=secret,
                             config=Config(retries={"max_attempts": 1}))
        for _ in range(600):
            try:
                probe.list_collections()
                break
            except Exception:
                assert proc.poll() is None, err.read_text()
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def client(url: str, data: Path, org: str, category: str):
    """(access key id, secret, boto3 client) for a new key of ``org`` in ``category``."""
    import boto3
    from botocore.config import Config

    from candor.api.keys import KeyStore

    key, secret = KeyStore.open(data, store_url()).create(org, category)
    c = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                     aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                     config=Config(retries={"max_attempts": 1}, connect_timeout=60,
                                   read_timeout=120))
    return key.access_key_id, secret, c
