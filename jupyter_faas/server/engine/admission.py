"""Slots: what may run now, counted against the server's and each function's limits.

Lambda's model with a local twist: the server-wide limit is a memory budget (the sum of
the memory sizes of running invocations; default 80% of RAM) and optionally a count
(``max_concurrency``), so I/O-bound functions fan out wide; a function's reserved
concurrency caps it alone; a map's ``concurrency=`` caps its group.  Pure bookkeeping:
the service asks :meth:`Slots.fits`, then counts (:meth:`Slots.take`) and gives back
(:meth:`Slots.give_back`) around each run.  The first invocation always fits the memory
budget, so a function larger than the budget still runs, alone.
"""

from __future__ import annotations


class Slots:
    def __init__(self, memory_budget_mb: int, max_concurrency: int | None):
        self.memory_budget_mb = memory_budget_mb
        self.max_concurrency = max_concurrency
        self.running = 0
        self.memory_in_use = 0                     # MB
        self.by_function: dict[str, int] = {}
        self.by_group: dict[str, int] = {}         # a map's concurrency, kept by the server

    def fits(self, function: dict, group: tuple | None = None) -> bool:
        """Whether one more invocation of ``function`` (of ``group``: ``(id, limit)``) may start."""
        if self.max_concurrency is not None and self.running >= self.max_concurrency:
            return False
        if group is not None and self.by_group.get(group[0], 0) >= group[1]:
            return False
        if self.running and self.memory_in_use + function["memory"] > self.memory_budget_mb:
            return False
        reserved = function.get("concurrency")
        if reserved is not None and self.by_function.get(function["name"], 0) >= reserved:
            return False
        return True

    def take(self, function: dict, group: tuple | None = None) -> None:
        name = function["name"]
        self.running += 1
        self.memory_in_use += function["memory"]
        self.by_function[name] = self.by_function.get(name, 0) + 1
        if group is not None:
            self.by_group[group[0]] = self.by_group.get(group[0], 0) + 1

    def give_back(self, function: dict, group: tuple | None = None) -> None:
        self.running -= 1
        self.memory_in_use -= function["memory"]
        self.by_function[function["name"]] -= 1
        if group is not None:
            left = self.by_group[group[0]] - 1
            if left:
                self.by_group[group[0]] = left
            else:
                del self.by_group[group[0]]  # groups come and go with maps: keep none idle

    def throttle_reason(self, function: dict) -> tuple[str, str]:
        """Why a sync call of ``function`` found no slot: (text, Lambda's reason code)."""
        reserved = function.get("concurrency")
        if reserved is not None and self.by_function.get(function["name"], 0) >= reserved:
            return (f"the function's reserved concurrency ({reserved}) is in use",
                    "ReservedFunctionConcurrentInvocationLimitExceeded")
        return ("the server's concurrency limit (memory budget "
                f"{self.memory_budget_mb} MB, max_concurrency {self.max_concurrency}) is in use",
                "ConcurrentInvocationLimitExceeded")

    def stats(self) -> dict:
        return {"running": self.running, "memory_in_use_mb": self.memory_in_use,
                "memory_budget_mb": self.memory_budget_mb, "max_concurrency": self.max_concurrency}
