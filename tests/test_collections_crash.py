"""``kill -9`` in the middle of a large ``candor index`` run loses nothing it reported.

``candor index --json`` prints (and flushes) one line per photo only after that photo's faces
(and its audit record) are committed, a group of photos per transaction; the test kills the
process at an arbitrary point after some lines, twice (the second run writes into the crashed
database), then opens the data dir afresh: every reported face is there, the database passes
SQLite's integrity check, and the vector index rebuilt from the database agrees with it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from postgres_helper import store_url

from candor.config import OPERATOR_ORG
from candor.service import Service
from candor.service.indexing import GROUP_PHOTOS
from candor.store import Store


def _run_and_kill(home, paths, after_lines: int, extra_delay: float) -> list[dict]:
    env = {**os.environ, "CANDOR_DATA_DIR": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "candor.cli", "index", "big",
                             *map(str, paths), "--create", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for raw in proc.stdout:
            lines.append(json.loads(raw))
            if len(lines) >= after_lines:
                break
        time.sleep(extra_delay)  # somewhere inside the next photo: model work or the commit
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # lines printed while we slept were reported too (a photo takes ~20 ms, the sleep up to
    # 300 ms); a line cut off by the kill was not
    rest = proc.stdout.read()
    lines += [json.loads(raw) for raw in rest.splitlines(keepends=True) if raw.endswith("\n")]
    assert len(lines) >= after_lines, "the run ended before it could be killed"
    assert len(lines) < len(paths), "the run ended before it could be killed"
    return lines


def test_kill_9_during_index_loses_nothing_reported(tmp_path, data_dir):
    lfw = sorted((data_dir / "lfw").glob("*/*.jpg"))
    if len(lfw) < 200:
        pytest.skip("LFW photos not found")
    home = tmp_path / "data"
    rng = random.Random(7)
    reported: list[str] = []
    first = _run_and_kill(home, lfw[:200], after_lines=20, extra_delay=rng.uniform(0, 0.3))
    second = _run_and_kill(home, lfw[200:400], after_lines=12, extra_delay=rng.uniform(0, 0.3))
    for line in first + second:
        assert "Error" not in line
        reported += [r["Face"]["FaceId"] for r in line["FaceRecords"]]
    assert len(reported) >= 25

    store = Store(home, url=store_url())  # a fresh open, as after a restart
    assert store.integrity_check() == "ok"
    store.engine.dispose()

    service = Service(home)
    listed = service.call("ListFaces", {"CollectionId": "big", "MaxResults": 4096})
    stored = [f["FaceId"] for f in listed["Faces"]]
    assert set(reported) <= set(stored)
    # stored but not reported: at most, for each of the two kills, the photos of the group
    # whose commit the kill cut short of being printed (candor index commits GROUP_PHOTOS
    # photos per transaction)
    unreported = {f["ImageId"] for f in listed["Faces"] if f["FaceId"] not in set(reported)}
    assert len(unreported) <= 2 * GROUP_PHOTOS
    count = service.call("DescribeCollection", {"CollectionId": "big"})["FaceCount"]
    assert count == len(stored)

    from candor.service.collections import store_of

    store = store_of(service)
    index = store.face_index(store.collection("big", org=OPERATOR_ORG).id)
    assert index.ntotal == count
    probe = service.call("SearchFaces", {"CollectionId": "big", "FaceId": reported[0],
                                         "FaceMatchThreshold": 0, "MaxFaces": 1})
    assert len(probe["FaceMatches"]) == 1
