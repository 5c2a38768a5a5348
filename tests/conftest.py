"""Shared fixtures: where the face photos are, and skipping cleanly when they are absent; and
the store every test runs on.

Every test module that touches stored state runs twice, once per store: on SQLite in the test's
data dir and on PostgreSQL (the session's embedded server, a fresh database per test), through
the module-scoped ``store_backend`` fixture that the autouse ``candor_home`` requests (test ids
end in ``[sqlite]`` / ``[postgresql]``; tests/postgres_helper.py has the details). Modules in
:data:`ONE_STORE` run once: they touch no store (engines, scoring, policies, docs), or are
about SQLite files or about PostgreSQL themselves. A test in one of them that does touch the
store opts in with ``@pytest.mark.stores``. ``CANDOR_TEST_STORES=sqlite`` (or ``postgresql``)
runs one store only, as does ``-k "not postgresql"``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the store's fixtures: ``pg_server``, ``store_backend``, ``store_database``, ``database_url``, ``pg_url``
pytest_plugins = ["postgres_helper"]

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


#: modules that run once (on SQLite), and why
ONE_STORE = {
    # no stored state: engines, models, scoring, evaluation, policies, the protocol, the docs
    "test_architecture", "test_docs", "test_engine", "test_imaging", "test_yunet", "test_pipeline",
    "test_onnx_backend", "test_ert", "test_batcher", "test_video_redact", "test_eval", "test_eval_metrics",
    "test_eval_identification", "test_lfw", "test_celebrities_lfw", "test_fairness",
    "test_fairness_cross", "test_fairness_data", "test_fpir", "test_policy", "test_templates",
    "test_http_protocol", "test_sigv4", "test_validation", "test_operation_table",
    "test_backend_option", "test_augment", "test_video_tracking", "test_named_landmarks",
    # the report over an in-memory SQLite ledger (the numbers, not the store)
    "test_governance_report",
    # about SQLite files on disk (erasure leaves no bytes in the .db / -wal / index files), and
    # SQLite's group commits (Database.group_commits does nothing on PostgreSQL)
    "test_erasure_on_disk", "test_group_commit",
    # about the stores themselves: their own SQLite files and pg_url databases
    "test_migrations", "test_postgres_cli", "test_two_nodes", "test_video_nodes",
}


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "stores: run this test on both stores in a ONE_STORE module")


def pytest_generate_tests(metafunc) -> None:
    """Run the tests of stateful modules once per store (``store_backend``, module scope)."""
    if "store_backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in ONE_STORE and metafunc.definition.get_closest_marker("stores") is None:
        return
    from postgres_helper import BACKENDS  # here: pytest_plugins imports it (assert rewriting)

    metafunc.parametrize("store_backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(autouse=True)
def candor_home(tmp_path_factory, monkeypatch, store_database) -> Path:
    """EVERY test gets its own data directory (also set in the environment for subprocesses)
    and its own HOME, so nothing can write into the user's real ``~/.local/share/candor``; on
    the PostgreSQL half its own database too (``store_database``, CANDOR_DATABASE_URL)."""
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
