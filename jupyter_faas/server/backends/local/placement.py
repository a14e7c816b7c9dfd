"""Where the next invocation of a function version runs: a warm environment soon, or a cold start now.

Lambda starts a new execution environment whenever none is idle.  On a laptop
with two cores that is the wrong answer for a burst of short CPU-bound
invocations (a ``map`` of a cheap function): every cold start costs a fork and
a code load (tens of ms of CPU), while a busy warm environment would have been
free in a fraction of a millisecond.  So the pool keeps, per version, running
estimates of:

- ``cycle_s``: how long an invocation holds an environment, as the server sees it
  (dispatch to result);
- ``cpu_fraction``: the share of the handler's own run time spent on CPU (both
  reported by the runtime), which tells CPU-bound work from I/O-bound work;
- ``init_s``: how long a cold start of this version takes.

and decides, with no I/O (:func:`wait_for_warm`):

1. fewer environments of this version than CPU cores: start one (parallelism is free);
2. already ``2 × cores`` cold starts under way: wait for them; a new one would not be
   ready sooner, and more forks at once than cores only slow them all;
3. nothing measured yet (the start of a burst): wait while an environment took its
   invocation less than a cold-start time ago, rather than fork one per queued item;
4. I/O-bound work (sleeping, waiting on the network): start one, as Lambda does,
   because more environments mean more throughput;
5. CPU-bound work: wait for the busy environment expected to be free soonest, if
   that is sooner than a cold start would be ready; else start one.

Waiting never outlives a cold start: an environment overdue by more than the
cold-start time no longer counts as "soon", so a stuck invocation cannot hold up
the queue behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Weight of the newest observation in the running averages.
ALPHA = 0.2
#: A version whose handler spends at least this share of its time on CPU is CPU-bound.
CPU_BOUND = 0.5
#: Cold-start estimate before one was measured (seconds).
DEFAULT_INIT_S = 0.03
#: Cold starts under way at once, per core, for one version.
STARTING_PER_CPU = 2


@dataclass
class VersionStats:
    cycle_s: float | None = None
    cpu_fraction: float | None = None
    init_s: float | None = None

    def observe_run(self, cycle_s: float, handler_s: float | None, cpu_s: float | None) -> None:
        """One invocation: the server's dispatch-to-result time, and the runtime's own wall and CPU time."""
        self.cycle_s = _ewma(self.cycle_s, cycle_s)
        if cpu_s is not None and handler_s:
            # Against the handler's own time, not the cycle: the cycle of a no-op is all
            # server and wire latency, which would make it look I/O-bound.
            self.cpu_fraction = _ewma(self.cpu_fraction, min(1.0, cpu_s / handler_s))

    def observe_init(self, init_s: float) -> None:
        self.init_s = _ewma(self.init_s, init_s)


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


def wait_for_warm(stats: VersionStats | None, busy_since: list[float], starting_since: list[float],
                  now: float, cpus: int, default_init_s: float = DEFAULT_INIT_S) -> float | None:
    """Seconds to wait for a warm environment of this version, or None to cold-start one now.

    ``busy_since``: when each busy environment of the version took its invocation;
    ``starting_since``: when each environment still starting began (all monotonic seconds);
    ``default_init_s``: the cold-start time of any version, for a version not yet measured.
    """
    if len(busy_since) + len(starting_since) < cpus:
        return None
    cold = stats.init_s if stats is not None and stats.init_s is not None else default_init_s
    if len(starting_since) >= STARTING_PER_CPU * cpus:
        # A new cold start is never ready before the ones already under way, and more
        # forks at once than cores only slow them all down.
        return cold / 2
    if stats is None or stats.cycle_s is None or stats.cpu_fraction is None:
        # Nothing has finished yet (the start of a burst): an environment that took its
        # invocation less than a cold-start time ago may be about to finish.
        soon = [t + cold - now for t in busy_since if t + cold > now]
        return min(soon) if soon else None
    if stats.cpu_fraction < CPU_BOUND:
        return None
    soon = [t + stats.cycle_s - now for t in busy_since if t + stats.cycle_s - now > -cold]
    if not soon:
        return None
    wait = max(0.0, min(soon))
    return wait if wait < cold else None
