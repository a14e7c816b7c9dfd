"""The cluster as ``/faas/api/status`` shows it (``backends.dask.workers``), for the panel's cluster view.

Two sources, merged per worker:

- the scheduler's ``identity`` (read by the backend at most once a second): each worker's
  address, name, threads, memory limit and the memory of the worker process itself;
- the metric this server's worker plugin adds to every heartbeat
  (``metrics["jupyter_faas-<server id>"]``, see :func:`kernel_workers.dask_worker.heartbeat`):
  this server's environments on the worker with the memory each uses now, their total, and
  how the worker enforces memory limits (``cgroup`` or ``watchdog``).

The environments' states (busy, idle, starting) are the server's own: it hands them out.
"""

from __future__ import annotations

from collections import defaultdict

from ..base import environment_key

MB = 1024 * 1024


def workers(identity: dict, environments, metric: str) -> list[dict]:
    """One dict per worker, by address: the scheduler's figures, and this server's environments."""
    by_worker = defaultdict(list)
    for env in environments:
        if env.worker:
            by_worker[env.worker].append(env)
    out = []
    for address in sorted(set(identity) | set(by_worker)):
        info = identity.get(address) or {}
        metrics = info.get("metrics") or {}
        mine = metrics.get(metric) or {}
        reported = {e.get("id"): e for e in mine.get("environments") or ()}
        envs = []
        for env in sorted(by_worker.get(address, ()), key=lambda e: e.name):
            seen = reported.get(env.name) or {}
            envs.append({"id": env.name, "function": env.function["name"],
                         "version": environment_key(env.function)[2], "state": env.state,
                         "memory_mb": seen.get("memory_mb"), "memory_limit_mb": env.function["memory"]})
        limit = info.get("memory_limit")
        out.append({
            "address": address,
            "name": None if info.get("name") is None else str(info["name"]),
            "in_cluster": address in identity,
            "nthreads": info.get("nthreads"),
            "memory_mb": round(metrics["memory"] / MB) if metrics.get("memory") is not None else None,
            "memory_limit_mb": round(limit / MB) if limit else None,
            "environments_memory_mb": mine.get("memory_mb"),
            "memory_enforcement": mine.get("memory_enforcement"),
            "environments": envs,
        })
    return out


def enforcement(workers_view: list[dict]) -> str:
    """How the workers enforce memory limits, in one phrase for the status."""
    modes = defaultdict(int)
    for w in workers_view:
        if w["in_cluster"] and w["memory_enforcement"]:
            modes[w["memory_enforcement"]] += 1
    if not modes:
        return "not reported yet (each worker says cgroup or watchdog once its plugin has started)"
    if len(modes) == 1:
        return f"{next(iter(modes))} (on the Dask workers)"
    return "mixed: " + ", ".join(f"{mode} on {n}" for mode, n in sorted(modes.items())) + " Dask workers"
