"""Who this process is among the nodes sharing one database: the owner name of its video jobs.

A node's id is kept in its data dir (``node-id``, made on first use), so that the same data dir
restarted is the same node. The process that runs the node holds an exclusive lock on
``node.lock`` in the data dir for its lifetime; the kernel drops the lock when the process dies,
``kill -9`` included. So a process that gets the lock knows that no live process runs as this
node, and jobs still owned by this node id are orphans it may take back at once instead of
waiting for their leases to expire (:meth:`candor.service.jobs.JobRunner.start`). A second
process on the same data dir (``candor video detect`` beside ``candor serve``, or two servers)
does not get the lock and runs under a name of its own, so it never takes the first one's jobs.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import IO

NODE_ID_FILE = "node-id"
LOCK_FILE = "node.lock"


def transient_id() -> str:
    """A name for a process that is not its data dir's node: host, pid and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def persistent_id(data_dir: Path) -> str:
    """The data dir's node id (made on first use)."""
    path = Path(data_dir) / NODE_ID_FILE
    try:
        text = path.read_text().strip()
        if text:
            return text[:100]
    except FileNotFoundError:
        pass
    node = f"{socket.gethostname()[:60]}-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(node + "\n")
    os.replace(tmp, path)
    return node


def claim_node(data_dir: Path) -> IO | None:
    """The open, exclusively locked ``node.lock`` of ``data_dir``, or None when another live
    process holds it (or the platform has no ``flock``). Keep it open while the node runs."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no identity across restarts, leases alone
        return None
    Path(data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = open(Path(data_dir) / LOCK_FILE, "a+")  # noqa: SIM115 (held for the node's life)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
