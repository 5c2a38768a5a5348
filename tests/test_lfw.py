"""LFW View 1 accuracy, end to end: the threshold is chosen on pairsDevTrain, measured on
pairsDevTest (bench/lfw_accuracy.py). Slow (a few minutes): every one of 4,992 images."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_lfw_view1_accuracy_at_least_98_5(data_dir):
    if not (data_dir / "lfw" / "pairsDevTest.txt").exists():
        pytest.skip("LFW View 1 not in the test data")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "lfw_accuracy.py"),
                           "--data", str(data_dir)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(re.search(r"accuracy on pairsDevTest: ([0-9.]+)", proc.stdout).group(1))
    missing = int(re.search(r"no face detected: (\d+)", proc.stdout).group(1))
    assert accuracy >= 0.985, proc.stdout
    assert missing <= 5, proc.stdout
