"""Slots: what may run now, counted against the server's and each function's limits.

Lambda's model with a local twist: the server-wide limit is a memory budget (the sum of
the memory sizes of running invocations; default 80% of RAM) and optionally a count
(``max_concurrency``), so I/O-bound functions fan out wide; a function's reserved
concurrency caps it alone; a map's ``concurrency=`` caps its group.  Pure bookkeeping:
the service asks :meth:`Slots.fits`, then counts (:meth:`Slots.take`) and gives back
(:meth:`Slots.give_back`) around each run.  The first invocation always fits a memory
budget, so a function larger than the budget still runs, alone.

Memory pools: an invocation counts against the memory of the machines it runs on.  The
backend says where (``backend.memory_pool(function)``): None for this machine's budget
(``memory_budget_mb``), or ``(name, budget_mb)`` for a pool of its own, as a Dask cluster's
invocations count against the cluster's memory, not this machine's (a budget of None: not
known yet, no cap).  ``max_concurrency`` counts every invocation, wherever it runs.
"""

from __future__ import annotations


class Slots:
    def __init__(self, memory_budget_mb: int, max_concurrency: int | None, backend=None):
        self.memory_budget_mb = memory_budget_mb
        self.max_concurrency = max_concurrency
        self.running = 0                           # every invocation, wherever it runs
        self.memory_in_use = 0                     # MB, of this machine's budget
        self.local_running = 0
        self.pools: dict[str, list] = {}           # name -> [running, MB in use, last budget]
        self.by_function: dict[str, int] = {}
        self.by_group: dict[str, int] = {}         # a map's concurrency, kept by the server
        self._pool_of = getattr(backend, "memory_pool", None) or (lambda function: None)

    def fits(self, function: dict, group: tuple | None = None) -> bool:
        """Whether one more invocation of ``function`` (of ``group``: ``(id, limit)``) may start."""
        if self.max_concurrency is not None and self.running >= self.max_concurrency:
            return False
        if group is not None and self.by_group.get(group[0], 0) >= group[1]:
            return False
        pool = self._pool_of(function)
        if pool is None:
            if self.local_running and self.memory_in_use + function["memory"] > self.memory_budget_mb:
                return False
        else:
            running, in_use, _ = self.pools.get(pool[0]) or (0, 0, None)
            if pool[1] is not None and running and in_use + function["memory"] > pool[1]:
                return False
        reserved = function.get("concurrency")
        if reserved is not None and self.by_function.get(function["name"], 0) >= reserved:
            return False
        return True

    def take(self, function: dict, group: tuple | None = None) -> None:
        name = function["name"]
        self.running += 1
        self._count(function, +1)
        self.by_function[name] = self.by_function.get(name, 0) + 1
        if group is not None:
            self.by_group[group[0]] = self.by_group.get(group[0], 0) + 1

    def give_back(self, function: dict, group: tuple | None = None) -> None:
        self.running -= 1
        self._count(function, -1)
        self.by_function[function["name"]] -= 1
        if group is not None:
            left = self.by_group[group[0]] - 1
            if left:
                self.by_group[group[0]] = left
            else:
                del self.by_group[group[0]]  # groups come and go with maps: keep none idle

    def _count(self, function: dict, sign: int) -> None:
        pool = self._pool_of(function)
        if pool is None:
            self.local_running += sign
            self.memory_in_use += sign * function["memory"]
            return
        counts = self.pools.setdefault(pool[0], [0, 0, None])
        counts[0] += sign
        counts[1] += sign * function["memory"]
        counts[2] = pool[1]

    def throttle_reason(self, function: dict) -> tuple[str, str]:
        """Why a sync call of ``function`` found no slot: (text, Lambda's reason code)."""
        reserved = function.get("concurrency")
        if reserved is not None and self.by_function.get(function["name"], 0) >= reserved:
            return (f"the function's reserved concurrency ({reserved}) is in use",
                    "ReservedFunctionConcurrentInvocationLimitExceeded")
        pool = self._pool_of(function)
        if pool is not None and not (self.max_concurrency is not None and self.running >= self.max_concurrency):
            return (f"the memory budget of the {pool[0]} backend ({pool[1]} MB, counted in the memory "
                    f"sizes of its running invocations) is in use",
                    "ConcurrentInvocationLimitExceeded")
        return ("the server's concurrency limit (memory budget "
                f"{self.memory_budget_mb} MB, max_concurrency {self.max_concurrency}) is in use",
                "ConcurrentInvocationLimitExceeded")

    def stats(self) -> dict:
        return {"running": self.running, "memory_in_use_mb": self.memory_in_use,
                "memory_budget_mb": self.memory_budget_mb, "max_concurrency": self.max_concurrency,
                "memory_pools": {name: {"running": running, "memory_in_use_mb": in_use,
                                        "memory_budget_mb": budget}
                                 for name, (running, in_use, budget) in self.pools.items()}}
