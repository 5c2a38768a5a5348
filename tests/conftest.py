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


@pytest.fixture(autouse=True)
def candor_home(tmp_path_factory, monkeypatch) -> Path:
    """EVERY test gets its own data directory (also set in the environment for subprocesses)
    and its own HOME, so nothing can write into the user's real ``~/.local/share/candor``."""
    root = tmp_path_factory.mktemp("candor")
    home = root / "candor-data"
    monkeypatch.setenv("CANDOR_DATA_DIR", str(home))
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    _reset_default_service()
    yield home
    _reset_default_service()


def _reset_default_service() -> None:
    """The process-wide service of ``import candor`` is bound to one data dir: forget it."""
    import candor

    if getattr(candor, "_default", None) is not None:
        candor._default = None


# the store's engines: ``store_backend`` (sqlite | postgresql) and ``database_url`` fixtures
from postgres_helper import database_url, pg_server, pg_url, store_backend  # noqa: E402,F401
