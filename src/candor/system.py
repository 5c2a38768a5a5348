"""Facts about the machine the process runs on (one owner each)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup cpusets, unlike cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
