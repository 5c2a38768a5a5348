"""Shared fixtures: where the face photos are, and skipping cleanly when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared face photos (CANDOR_TEST_DATA); tests that need them skip without them."""
    if not (DATA / "samples").is_dir():
        pytest.skip(f"test photos not found at {DATA} (set CANDOR_TEST_DATA)")
    return DATA


@pytest.fixture(scope="session")
def samples(data_dir: Path) -> Path:
    return data_dir / "samples"


@pytest.fixture(scope="session")
def engine():
    """One engine for the whole session: models load once."""
    from candor.face.engine import Engine

    return Engine()


@pytest.fixture()
def candor_home(tmp_path, monkeypatch) -> Path:
    """A fresh data directory for this test, also set in the environment for subprocesses."""
    home = tmp_path / "candor-data"
    monkeypatch.setenv("CANDOR_DATA_DIR", str(home))
    return home
