"""What the engine may ask of a backend, and what it gets back.

A backend runs invocations in execution environments: the local one
(:mod:`.local`, a zygote and forked processes on this machine) today; a Dask
cluster and exec'd custom runtimes are siblings to come.  The engine never
touches a process, a socket or an environment's state: it holds opaque
environment handles and calls these methods, all on the server's event loop.

The engine's side of the contract, per invocation::

    env = take_idle(fn)            # a warm environment, now reserved, or None
       | wait_for_warm(fn)         # seconds worth waiting for one to come free, or None
       | new_environment(fn)       # a cold start, counted at once
    failure = await start_environment(env, code_for)   # cold only: INIT; None when ready
    run(env, request_id, payload, ...)                  # done(Outcome) is called once
    cancel(env)                                         # kill it; done() still comes
    release(env)                                        # after done(): warm again, or gone
    unreserve(env)                                      # reserved but never run: warm again

An :class:`Outcome` says how an invocation ended in its environment; the engine
turns it into a status, an error and a REPORT (:mod:`..engine.outcomes`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from ...errors import InvalidParameter


def environment_key(function: dict) -> tuple:
    """Which environments can serve ``function``: one engine version run as one Lambda version
    (``$LATEST`` or a published number), as Lambda keeps environments per version, so that
    ``AWS_LAMBDA_FUNCTION_VERSION`` and ``context.function_version`` are the version called."""
    return function["name"], function["version"], function.get("lambda_version", "$LATEST")


@dataclass
class Outcome:
    """How one invocation (or an environment's INIT) ended in its environment.

    ``kind``: ``result`` | ``error`` (the handler raised; ``header`` has Lambda's error
    fields, ``body`` the pickled exception) | ``init_error`` | ``timeout`` | ``oom`` |
    ``crash`` (``returncode``: exit status, or -signal) | ``cancelled``.
    ``duration_ms`` is the handler's run time; ``max_memory_mb`` the peak measured.
    ``init_ms``: the Init Duration of a cold start the backend made while running the
    invocation, not the one the engine asked for (a Dask task re-run on another worker, where
    the environment was started anew); the REPORT then carries it.  None otherwise.
    ``phase``: ``invoke``, or ``init`` for a cold start whose INIT failed (``timeout``: over
    the INIT limit, ``header["init_limit_s"]``; ``oom``: over the function's memory at INIT;
    ``crash``; ``init_error``: INIT raised); then ``init_output`` holds what INIT printed,
    ``(time, stream, line)``, logged after ``INIT_START`` as a successful INIT's is.
    """

    kind: str
    header: dict = field(default_factory=dict)
    body: bytes = b""
    duration_ms: float = 0.0
    max_memory_mb: float = 0.0
    returncode: int | None = None
    init_ms: float | None = None
    phase: str = "invoke"
    init_output: list = field(default_factory=list)
    #: ``(time, stream, line)`` the backend read after the environment died that the engine has
    #: not had yet (a leased environment's pipes, drained to their end), logged before the error
    output: list = field(default_factory=list)


class Backend(abc.ABC):
    """The operations above; environments are the backend's own objects (``env.id``,
    ``env.init_ms``, ``env.fresh`` and ``env.init_type`` are the only attributes the engine
    reads; ``init_type`` is Lambda's ``AWS_LAMBDA_INITIALIZATION_TYPE`` of the environment:
    ``on-demand``, ``provisioned-concurrency`` or ``snap-start``)."""

    @abc.abstractmethod
    def take_idle(self, function: dict):
        """A warm environment of this function version, reserved for one invocation, or None."""

    @abc.abstractmethod
    def wait_for_warm(self, function: dict) -> float | None:
        """Seconds until a busy environment of the version is expected free, when waiting
        beats a cold start; None to start one now."""

    @abc.abstractmethod
    def new_environment(self, function: dict):
        """A new environment for the version, reserved and counted as starting (not yet INIT)."""

    @abc.abstractmethod
    def is_starting(self, env) -> bool:
        """Whether ``env`` still needs :meth:`start_environment` (a cold start)."""

    @abc.abstractmethod
    async def start_environment(self, env, code_for) -> Outcome | None:
        """Start ``env`` and run INIT with ``code_for(function)``'s code: None when it is
        ready to run (still reserved), else the failure (``init_error`` or ``crash``;
        the environment is then gone)."""

    @abc.abstractmethod
    def run(self, env, request_id: str, payload: bytes, encoding: str, timeout: float,
            on_line, done, buffers: dict | None = None) -> None:
        """Run one invocation; ``on_line(stream, line)`` per output line while it runs, and
        ``done(outcome)`` exactly once when it ended (never before this returns)."""

    def init_lines(self, env) -> list:
        """``(time, stream, line)`` that ``env`` printed at INIT, taken once (logged before START)."""
        return []

    @abc.abstractmethod
    def cancel(self, env) -> None:
        """Kill what ``env`` runs (and every process it started); ``done`` says ``cancelled``."""

    @abc.abstractmethod
    def release(self, env) -> None:
        """An invocation's ``done`` came: keep ``env`` warm if it can serve again."""

    @abc.abstractmethod
    def unreserve(self, env) -> None:
        """``env`` was reserved (``take_idle``) but nothing was run on it: warm again."""

    @abc.abstractmethod
    def discard(self, env) -> None:
        """``env`` could not be started: forget it and free what it holds."""

    def can_lease(self, function: dict) -> bool:
        """Whether environments of ``function`` can be leased at all (then a map's lease request
        may start environments to lease)."""
        return False

    def lease(self, function: dict, lease_id: str, fields: dict, env=None):
        """Lease an idle environment of ``function`` to a client (see backends/local/leases.py);
        None: none now, or this backend does not lease (its invocations always cross the server).
        ``env``: lease this one, just started (reserved) for the lease; None: it is warm again.
        An environment whose cold start no invocation reported yet (``fresh``) hands it to the
        lease's first invocation (``INIT_START`` from ``fields["init_start"]``, INIT's lines, the
        Init Duration in that invocation's ``start`` record: see kernel_workers/lease.py)."""
        if env is not None:
            self.unreserve(env)
        return None

    def end_lease(self, lease) -> None:
        """A lease the engine has folded is over; its environment is the backend's again."""

    def lease_ran(self, lease, arg_file: str) -> None:
        """A leased invocation that had an argument buffers' file ended."""

    def kill_leased(self, lease, reason: str) -> None:
        """Kill a leased environment (``reason``: timeout, cancelled)."""

    @abc.abstractmethod
    def stop_function(self, name: str) -> None:
        """Stop the idle environments of every version of ``name`` (deleted or replaced)."""

    def provision(self, function: dict, count: int, code_for) -> None:
        """Keep ``count`` environments of this version started and initialized, and warm
        however long they are idle (Lambda's provisioned concurrency); 0 (or fewer) stops
        the ones no longer wanted: idle ones at once, busy ones when their invocation ends.
        Their first invocation reports no Init Duration.  A backend without it raises
        InvalidParameter (the caller asked for what this backend does not do)."""
        raise InvalidParameter(
            f"provisioned concurrency is not available on the {getattr(self, 'name', type(self).__name__)} "
            f"backend: keep the function on the local backend (backend='local') to provision it")

    def memory_pool(self, function: dict) -> tuple[str, int | None] | None:
        """Where an invocation of ``function`` counts in admission's memory budget: None for
        this machine's (``memory_budget_mb``), or ``(name, budget in MB)`` for the machines of
        a pool of its own (a Dask cluster's); a budget of None puts no cap on it (not known yet)."""
        return None

    def provisioned(self, function: dict) -> int:
        """How many environments :meth:`provision` keeps ready for ``function`` now."""
        return len(self.provisioned_environments(function))

    def provisioned_environments(self, function: dict) -> list[dict]:
        """The environments :meth:`provision` keeps for ``function`` that are up (INIT done):
        ``[{"id": env id, "busy": bool}]`` (busy: running an invocation now)."""
        return []

    async def wait_provisioned(self, function: dict) -> None:
        """Return once the environments :meth:`provision` asked for ``function`` are up, or
        could not start (:meth:`provision_failure`), or are no longer wanted.  The caller
        bounds the wait."""
        return None

    def snapshot_state(self, function: dict) -> dict | None:
        """Whether cold starts of ``function``'s engine version fork from a snapshot after
        INIT: ``{"state": "ready" | "initializing" | "refused" | "not yet", "reason": str |
        None}`` (``refused``: the version fell back to ordinary cold starts, ``reason`` says
        why; ``not yet``: no cold start made one yet); None when the version does not ask
        for snapshots or the backend has none."""
        return None

    def provision_failure(self, function: dict) -> str | None:
        """Why the environments :meth:`provision` keeps for ``function`` could not start, or None."""
        return None

    @abc.abstractmethod
    def stats(self) -> dict:
        """Counts for the status endpoint: environments by state, and how limits are enforced."""

    @abc.abstractmethod
    def start_background(self) -> None:
        """Start the backend's own housekeeping (reaping idle environments, sampling memory)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every environment; nothing the backend started outlives this."""
