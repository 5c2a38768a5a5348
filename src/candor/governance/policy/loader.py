"""Where policies come from: files, the policies shipped with candor, and the store that keeps
the policy in force and re-reads it when its file changes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from candor.governance.policy.model import (
    Decision,
    Policy,
    PolicyError,
    Request,
    UsageCounter,
)
from candor.governance.policy.parser import parse_policy

log = logging.getLogger(__name__)

def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate the policy file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{p}: cannot read the policy file: {exc.strerror or exc}"]) from exc
    return parse_policy(text, source=str(p))


def shipped_policies() -> list[str]:
    """Names of the example policies shipped with candor (``moratorium-2020``, ...)."""
    root = resources.files("candor") / "policies"
    return sorted(e.name[:-5] for e in root.iterdir() if e.name.endswith(".yaml"))


def shipped_policy_path(name: str) -> Path:
    """The path of a shipped policy by name (``moratorium-2020``) or file name."""
    fname = name if name.endswith(".yaml") else f"{name}.yaml"
    path = Path(str(resources.files("candor") / "policies" / fname))
    if not path.is_file():
        raise PolicyError([f"no shipped policy {name!r}; shipped: {', '.join(shipped_policies())}"])
    return path


def resolve_policy_path(spec: str | os.PathLike) -> Path:
    """A file path, or the name of a shipped policy when no such file exists."""
    p = Path(spec)
    if p.exists() or os.sep in str(spec) or str(spec).endswith((".yaml", ".yml")):
        return p
    return shipped_policy_path(str(spec))


class PolicyStore:
    """The policy in force, re-read when its file changes; an invalid new file is refused.

    The file is checked at most every ``check_interval`` seconds on access (a stat call), so
    there is no watcher thread to manage and every node of a scale-out picks the change up.
    The first load must succeed: a server does not start without a valid policy.
    """

    def __init__(self, path: str | os.PathLike, check_interval: float = 1.0,
                 on_change: Callable[[Policy], None] | None = None,
                 on_error: Callable[[PolicyError], None] | None = None):
        self.path = resolve_policy_path(path)
        self.check_interval = check_interval
        self.on_change = on_change
        self.on_error = on_error
        self.last_error: PolicyError | None = None
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._policy = load_policy(self.path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def policy(self) -> Policy:
        """The policy in force, after reloading it if the file changed."""
        if time.monotonic() - self._checked >= self.check_interval:
            self.maybe_reload()
        return self._policy

    def maybe_reload(self) -> bool:
        """Reload if the file changed; True when a new policy came into force."""
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            return self._reload_locked()

    def reload(self) -> bool:
        """Reload now, whether or not the file looks changed."""
        with self._lock:
            self._stamp = self._stat()
            self._checked = time.monotonic()
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        try:
            new = load_policy(self.path)
        except PolicyError as exc:
            self.last_error = exc
            log.error("policy %s refused, keeping %s (sha256 %s): %s", self.path,
                      self._policy.name, self._policy.sha256[:12], exc.message)
            if self.on_error:
                self.on_error(exc)
            return False
        self.last_error = None
        if new.sha256 == self._policy.sha256:
            return False
        self._policy = new
        log.info("policy %s now in force (sha256 %s)", new.name, new.sha256[:12])
        if self.on_change:
            self.on_change(new)
        return True

    def decide(self, req: Request, usage: UsageCounter | None = None) -> Decision:
        return self.policy.decide(req, usage)
