"""Memory limits of the local backend's environments: :mod:`kernel_workers.memory` (a cgroup v1
where the machine allows, the RSS watchdog otherwise), shared with the Dask workers, which
supervise their environments with the same code."""

from __future__ import annotations

import logging

from kernel_workers.memory import (MB, CgroupV1Memory, WatchdogMemory, _OpenFiles, descendants,
                                   kill_tree, make, own_memory_cgroup)

log = logging.getLogger("jupyter_faas.server")

__all__ = ["MB", "CgroupV1Memory", "WatchdogMemory", "_OpenFiles", "descendants", "kill_tree",
           "make_enforcer", "own_memory_cgroup"]


def make_enforcer(mode: str, tag: str):
    """``auto`` tries cgroups and falls back to the watchdog; ``cgroup`` insists."""
    enforcer = make(mode, tag, log)
    if enforcer is None:
        from ....errors import ServerError
        raise ServerError("memory_enforcement='cgroup' but no writable cgroup v1 memory "
                          "controller was found; use 'auto' or 'watchdog'")
    return enforcer
