"""Leases: a warm environment handed to one client, its invocations folded in from a journal.

The warm path without the server in it.  A client on this machine that keeps calling a
function asks for a lease (the direct socket's ``lease`` frame); the engine grants one when a
slot fits and an environment of the version is idle, and the backend hands the client a socket
to that environment (:mod:`..backends.local.leases`).  The client then sends invocations
straight to it: two process hops a call instead of four, and no store commit on the call's
path.  What keeps every promise of the server's own path:

* **Recorded before it runs, stored before anyone is told.**  The environment appends a
  ``start`` record to the lease's journal before the handler runs and an ``end`` record before
  it answers (:mod:`kernel_workers.lease`); a journal write is as durable against a crash of
  either process as a commit at synchronous=NORMAL.  The engine folds the journal into the
  store every ``LEASE_TICK_S`` (and before any read of the store: ``fold_leases``), one
  transaction for every invocation that ended since; after a crash, :func:`.lease_leftovers.fold_leftovers` at
  start folds what is left (ends stored, starts without an end failed ``Runtime.ServerStopped``).
* **Limits and cancel stay the server's.**  An invocation still running at a tick is
  *promoted*: it gets its ``running`` row, a place in ``active`` (so cancel, watch and re-attach
  find it), its deadline (``timeout`` + the grace, from its start), and its output is read
  live by the server (as its pipes fill, as on the server's own path).  A read of the store
  promotes what runs too (``fold_leases``), so it is seen ``running`` as on the server's path.  A kill (deadline, cancel, the memory watchdog) ends it exactly as one the
  server sent.
* **Slots.**  A lease holds one slot (concurrency and memory) for its life; its invocations do
  not take their own.  It is revoked after ``LEASE_IDLE_S`` unused, as soon as any invocation
  waits for a slot, and when the server stops.
* **One REPORT.**  The environment computes the REPORT with the same function as the server
  (:mod:`kernel_workers.reports`); an end it cannot judge alone (timed out, over its memory, a
  MemoryError) is judged here by the server's own rules (:mod:`.outcomes`).
"""

from __future__ import annotations

import logging
import secrets
import time
from types import SimpleNamespace

from kernel_workers import buffers, journal, reports

from ..model import FAILED, LATEST, RUNNING, SUCCEEDED
from .invocation import Invocation
from .lease_init import LeaseInitFailures
from .outcomes import init_lines
from .platform_lines import platform_lines, row_report
from .monitoring import input_summary

log = logging.getLogger("jupyter_faas.server")

#: seconds between folds of the journals while leases exist
LEASE_TICK_S = 0.1
#: a lease unused this long is revoked (its slot and environment go back to the pool)
LEASE_IDLE_S = 2.0
#: a promoted invocation's end is believed this long after its deadline (as the server's own)
DEADLINE_GRACE_S = 0.2
#: leases granted per request at most (a map asks for several)
MAX_LEASES = 64
#: a cancel of a request id no journal shows yet is applied if it starts within this many seconds
CANCEL_PENDING_S = 5.0
#: journal records a fold reads, stores and lets go of at a time (one transaction each): what
#: the server holds while catching up with a backlog is this, not the backlog (thousands after a
#: map of quick items); ~1 KB of Python objects each
FOLD_RECORDS = 512


class Lease:
    __slots__ = ("id", "handle", "function", "starts", "lines", "last_used", "revoked")

    def __init__(self, lease_id: str, handle, function: dict):
        self.id = lease_id
        self.handle = handle        # the backend's (e.g. backends/local/leases.EnvironmentLease)
        self.function = function
        self.starts: dict = {}      # request id -> start record, for those not ended yet
        self.lines: dict = {}       # request id -> lines records read before its end record
        self.last_used = time.time()
        self.revoked = False


class Leasing(LeaseInitFailures):
    """Mixed into :class:`~.service.Service`."""

    def _init_leases(self) -> None:
        self.leases: dict[str, Lease] = {}
        self._lease_tick = None
        self._lease_cancels: dict[str, float] = {}  # request id -> when the cancel came
        #: token -> (function, environment, Outcome, Init Duration) of an INIT that failed in an
        #: environment started for a map's lease, until an item of the map claims it
        self._init_failures: dict[str, tuple] = {}
        self._idle_revoke = None  # the timer of _revoke_idle, while one is due
        self._idle_revoke_name: str | None = None  # ... and of which function (None: all)

    # ---- granting --------------------------------------------------------------------------

    def grant_leases(self, name: str, version, want: int, on_started=None) -> tuple[list, int]:
        """Lease up to ``want`` idle environments of the function to a client: ``([(info, handle)],
        starting)`` (the caller sends ``handle.client_sock`` with ``info``).  None granted when no
        environment of it is idle, a slot does not fit, invocations are waiting, or the server is
        stopping.  ``on_started(granted)``: start environments for the rest too (a map), each
        leased the moment it is ready and passed to it (``[]`` when one could not start, with
        ``init_failure=token`` when its INIT failed: see :meth:`claim_init_failure`);
        ``starting`` says how many.

        ``info``: {lease_id, environment_id, function, version, lambda_version, memory_mb,
        timeout_s, pid}.  Raises the :class:`~jupyter_faas.errors.FaaSError` of ``get_function``.
        """
        function = self.get_function(name, version)
        if self.closing or any(self.waiting.values()) or not isinstance(version, int):
            return [], 0  # a qualifier ($LATEST, an alias) may move between calls: never leased
        want = max(0, min(int(want), MAX_LEASES))
        out = []
        while len(out) < want and self.slots.fits(function, None):
            granted = self._lease_one(function, slot_taken=False)
            if granted is None:
                break
            out.append(granted)
        starting = 0
        if on_started is not None and self.backend.can_lease(function):
            while len(out) + starting < want and self.slots.fits(function, None):
                self.slots.take(function, None)  # the lease's slot, from the start
                env = self.backend.new_environment(function)
                self.spawn(self._start_for_lease(function, env, on_started))
                starting += 1
        if out or starting:
            self._lease_tick_soon()
        return out, starting

    def _lease_one(self, function: dict, slot_taken: bool, env=None):
        """Lease an idle environment of ``function`` (``env``: this one, just started for the
        lease and reserved; given back to the pool when it cannot be leased)."""
        lease_id = "lease-" + secrets.token_hex(8)
        info = {"lease_id": lease_id, "function": function["name"], "version": function["version"],
                "lambda_version": function.get("lambda_version", LATEST),
                "memory_mb": function["memory"], "timeout_s": function["timeout"]}
        handle = self.backend.lease(function, lease_id, dict(
            info, per_gb_second=self.pricing.per_gb_second, per_request=self.pricing.per_request,
            # over these the environment does not answer alone: an argument goes the server's way
            # (which refuses it), a result is judged here (Function.ResponseSizeTooLarge)
            max_payload_bytes=self.sizes.max_payload_bytes,
            max_buffer_bytes=self.sizes.buffer_limit(function)[0],
            # an environment whose cold start no invocation reported yet: its first leased
            # invocation logs this, then INIT's output (kernel_workers/lease.py, "init")
            init_start=init_lines(function, 0.0, [])[0][1]), **({} if env is None else {"env": env}))
        if handle is None:
            return None
        if not slot_taken:
            self.slots.take(function, None)
        lease = Lease(lease_id, handle, function)
        handle.on_end = lambda _, lease=lease: self._lease_over(lease)
        handle.on_fold = lambda lease=lease: self._fold(lease)  # a spent argument file, or an end the client waits for
        self.leases[lease_id] = lease
        # pid: a map's client reads its CPU time (it is on this machine) to see its items wait
        return dict(info, environment_id=handle.env.id, pid=getattr(handle.env, "pid", None)), handle

    async def _start_for_lease(self, function: dict, env, on_started) -> None:
        """A cold start for a map's lease; leased the moment it is ready (or the slot given back)."""
        granted = token = None
        try:
            failure = await self.backend.start_environment(env, self.environment_code)
            if failure is not None and not self._killing_runs:
                token = self._hold_init_failure(function, env, failure)
            elif failure is None:
                if self.closing:
                    self.backend.unreserve(env)
                else:
                    # this one (its first invocation reports its cold start), or idle again
                    granted = self._lease_one(function, slot_taken=True, env=env)
        except Exception:  # noqa: BLE001 - the map goes on with the leases it has
            log.exception("could not start an environment for a lease of %s", function["name"])
            self.backend.discard(env)
        if granted is None:
            self.slots.give_back(function, None)
            self._admit()
        else:
            self._lease_tick_soon()
        if token is not None:
            on_started([], init_failure=token)
        else:
            on_started([] if granted is None else [granted])

    # ---- folding ---------------------------------------------------------------------------

    def fold_leases(self) -> None:
        """Fold every lease's new records into the store now (before a read of it), and promote
        what runs: a read sees it ``running``, as one the server sent (nothing in the record
        tells a leased invocation from another)."""
        for lease in list(self.leases.values()):
            self._fold(lease)
            handle = lease.handle
            if not handle.ended and handle.running is not None and handle.running[0] in lease.starts:
                self._promote(lease, *handle.running)
        if self._pending_finished:
            self._commit()  # a promoted one's end, now rather than at the next turn of the loop

    def _lease_tick_soon(self) -> None:
        if self._lease_tick is None and self.leases:
            self._lease_tick = self.clock.call_later(LEASE_TICK_S, self._tick)

    def _tick(self) -> None:
        self._lease_tick = None
        now = time.time()
        queued = any(self.waiting.values())
        for lease in list(self.leases.values()):
            self._fold(lease)
            handle = lease.handle
            if handle.ended:
                continue
            if handle.running is not None:
                rid, start = handle.running
                if now - _num(start.get("t"), now) >= LEASE_TICK_S:
                    self._promote(lease, rid, start)  # its lines are read from now on
            elif not lease.revoked and (queued or self.closing or now - lease.last_used > LEASE_IDLE_S):
                lease.revoked = True
                handle.revoke()
        for rid, when in list(self._lease_cancels.items()):
            if now - when > CANCEL_PENDING_S:
                del self._lease_cancels[rid]
        self._lease_tick_soon()

    def _fold(self, lease: Lease) -> None:
        """Fold the lease's journal into the store as far as it was written when this began,
        :data:`FOLD_RECORDS` records at a time: a fold that fell behind (a map's environments
        outrun the server) holds one batch at a time, not the whole backlog."""
        handle = lease.handle
        upto = handle.journal_size()
        while handle.poll(FOLD_RECORDS, upto) == FOLD_RECORDS or handle.records:
            if not self._fold_records(lease, handle.take()):
                return

    def _fold_records(self, lease: Lease, records: list) -> bool:
        """One batch of a fold; False when the store refused it (kept for the next tick)."""
        handle = lease.handle
        if not records:
            return True
        ended, later, cancels = [], [], []
        now = time.time()
        starts = dict(lease.starts)
        lines, used = {}, []  # lines records read now; request ids whose earlier ones were used
        for header, body in records:
            header = _flat(header)
            rid = header.get("request_id")
            if not isinstance(rid, str) or not 0 < len(rid) <= 64:
                continue
            if header["k"] == "lines":
                lines.setdefault(rid, []).extend(journal.parse_lines(body))
            elif header["k"] == "start":
                starts[rid] = header
                if rid in self._lease_cancels:
                    cancels.append(rid)
            elif header["k"] == "end":
                start = starts.pop(rid, None)
                if start is None:
                    log.warning("lease %s: an end of %s with no start; ignored", lease.id, rid)
                    continue
                if rid in lines or rid in lease.lines:
                    used.append(rid)
                    header = _with_lines(header, lease.lines.get(rid, []) + lines.pop(rid, []))
                inv = self.active.get(rid)
                if header.get("clean") and inv is None:
                    ended.append(self._ended_row(lease, start, header, body))
                else:
                    later.append((rid, start, header, body))
        if ended:
            try:
                self.store.add_ended([e[:3] for e in ended])
            except Exception:  # noqa: BLE001 - kept: the next tick writes them again
                log.exception("could not store %d invocations of lease %s; retrying", len(ended), lease.id)
                handle.records[:0] = records
                return False
        lease.starts = starts
        for rid in used:
            lease.lines.pop(rid, None)
        for rid, more in lines.items():  # their end is not read yet (or the start never ended)
            lease.lines.setdefault(rid, []).extend(more)
        lease.last_used = now
        for row, _, logs, arg_file in ended:
            if arg_file is not None:
                self.backend.lease_ran(handle, arg_file)
            if self.feed:
                self._feed_lines(row, logs)
                self.feed.emit({"type": "invocation", **{k: row.get(k) for k in _FEED_FIELDS}})
        if any(e[3] is not None for e in ended) and self.files is not None:
            self.files.replenish()  # the client took a spare for each
        for rid, start, header, body in later:
            self._end_leased(lease, rid, start, header, body)
        for rid in cancels:
            self._lease_cancels.pop(rid, None)
            if rid in lease.starts:
                self._promote(lease, rid, lease.starts[rid])
                self.backend.kill_leased(handle, "cancelled")
        return True

    def _ended_row(self, lease: Lease, start: dict, end: dict, body) -> tuple:
        """``(row, result, logs, argument file)`` of an invocation whose clean end is in the journal."""
        function = lease.function
        rep = end.get("report") if isinstance(end.get("report"), dict) else {}
        error = end.get("error") if isinstance(end.get("error"), dict) else None
        status = SUCCEEDED if end.get("status") == SUCCEEDED and error is None else FAILED
        init_ms, init_logs = _init_of(start)
        billed = int(_num(rep.get("billed_duration_ms")))
        if init_ms is not None:  # billed with its INIT, as the server's path bills a cold start
            billed = self._report(_num(rep.get("duration_ms")), function["memory"], 0,
                                  init_ms)["billed_duration_ms"]
        row = {"request_id": end["request_id"], "function": function["name"], "version": function["version"],
               "invocation_type": "RequestResponse", "encoding": _text(start.get("encoding"), "pickle"),
               "status": status, "error": error, "error_type": error and error.get("errorType"),
               "created_at": _num(start.get("t")), "started_at": _num(start.get("t")),
               "ended_at": _num(end.get("t")), "duration_ms": _num(rep.get("duration_ms")),
               "billed_duration_ms": billed,
               "memory_size_mb": function["memory"], "max_memory_used_mb": int(_num(rep.get("max_memory_used_mb"))),
               "init_duration_ms": None if init_ms is None else round(init_ms, 2),
               "environment_id": lease.handle.env.id,
               "input_summary": _summary(start),
               "lambda_version": function.get("lambda_version", LATEST),
               "init_type": _text(rep.get("init_type"), None), "result_buffers": end.get("buffers"),
               "implicit_lines": 1}  # its START, END and REPORT: made from the row (platform_lines)
        logs = _handler_lines(end)
        if init_ms is not None:
            # Its cold start's lines first (INIT_START, INIT's output), then START: a START made
            # when read would come before every stored line, so this one invocation per
            # environment stores its platform lines, made from its row as the others' are.
            start_line, tail = platform_lines(row)
            row["implicit_lines"] = 0
            logs = (init_logs + [(row["started_at"], "platform", start_line)] + logs
                    + [(row["ended_at"], "platform", line) for line in tail])
        described = start.get("buffers")
        arg_file = described.get("file") if isinstance(described, dict) else None
        return row, bytes(body) if body else None, logs, arg_file

    def _feed_lines(self, row: dict, logs: list) -> None:
        """An invocation that ended under its lease without the server reading its output: its
        lines to the event feed as the server's path sends each as it is printed (a watcher of
        the feed saw none of a quick leased call's), START, END and REPORT made from its row."""
        rid, name = row["request_id"], row["function"]
        lines = logs
        if row.get("implicit_lines"):
            start_line, tail = platform_lines(row)
            lines = ([(row["started_at"], "platform", start_line)] + list(logs)
                     + [(row["ended_at"], "platform", line) for line in tail])
        for entry in lines:
            self.feed.emit({"type": "log", "request_id": rid, "function": name, "line": tuple(entry)})

    # ---- a long invocation: promoted to the server's own bookkeeping ---------------------

    def _promote(self, lease: Lease, rid: str, start: dict) -> Invocation:
        inv = self.active.get(rid)
        if inv is not None:
            return inv
        function = lease.function
        env = lease.handle.env
        started_at = _num(start.get("t"), time.time())
        buffers = start.get("buffers") if isinstance(start.get("buffers"), dict) else None
        inv = Invocation(rid, function, b"", _text(start.get("encoding"), "pickle"), "RequestResponse",
                         False, started_at, buffers)
        inv.lease, inv.env = lease, env
        inv.status = RUNNING
        self.store.add_invocation({
            "request_id": rid, "function": function["name"], "version": function["version"],
            "invocation_type": "RequestResponse", "encoding": inv.encoding, "status": RUNNING,
            "created_at": started_at, "started_at": started_at, "environment_id": env.id,
            "memory_size_mb": function["memory"], "input_summary": _summary(start),
            "lambda_version": function.get("lambda_version", LATEST)}, b"")
        self.active[rid] = inv
        self.feed.invocation(inv, started_at=started_at, environment_id=env.id)
        for ts, stream, line in _init_of(start)[1]:  # its environment's cold start, before START
            self._log(inv, stream, line)
        self._log(inv, "platform", reports.start_line(rid, function.get("lambda_version", LATEST)))
        lease.handle.follow(rid, lambda stream, line: self._log(inv, stream, line))
        wait = started_at + function["timeout"] + DEADLINE_GRACE_S - time.time()
        inv.deadline = self.clock.call_later(max(0.0, wait), self._lease_deadline, lease, rid)
        return inv

    def _lease_deadline(self, lease: Lease, rid: str) -> None:
        self._fold(lease)
        if lease.handle.running is not None and lease.handle.running[0] == rid:
            self.backend.kill_leased(lease.handle, "timeout")

    def _end_leased(self, lease: Lease, rid: str, start: dict, end: dict, body) -> None:
        """An end the lean fold does not take: of a promoted invocation, or one to judge here."""
        inv = self._promote(lease, rid, start)
        if inv.deadline is not None:
            inv.deadline.cancel()
        function = inv.function
        if end.get("clean"):
            row, result, _, arg_file = self._ended_row(lease, start, end, body)
            # what the environment drained, the line the server had begun joined to its end
            # (START, and INIT's lines, were logged when it was promoted)
            for _, stream, line in lease.handle.unfollow(_handler_lines(end)):
                self._log(inv, stream, line)
            rep = end.get("report") if isinstance(end.get("report"), dict) else {}
            if row["error"] is not None:
                self._log(inv, "platform", reports.error_line(row["error"]))
            self._log(inv, "platform", reports.end_line(rid))
            self._log(inv, "platform", reports.report_line(rid, row_report(row), row["status"], row["error_type"]))
            fields = {k: row[k] for k in ("duration_ms", "billed_duration_ms", "memory_size_mb",
                                          "max_memory_used_mb", "init_duration_ms", "init_type",
                                          "error", "error_type", "environment_id", "ended_at")}
            if row["result_buffers"] is not None:
                fields["result_buffers"] = row["result_buffers"]
            if arg_file is not None:
                self.backend.lease_ran(lease.handle, arg_file)
            self._finish(inv, row["status"], fields, result, dict(rep))
            return
        drained = [(_num(e[0]), _text(e[1], "stdout"), _text(e[2], "")) for e in end.get("lines") or ()
                   if isinstance(e, (list, tuple)) and len(e) == 3]
        for _, stream, line in lease.handle.unfollow(drained):
            self._log(inv, stream, line)
        duration, peak = _num(end.get("duration_ms")), _num(end.get("peak_mb"))
        if end.get("outcome") == "result" and not end.get("oom") and peak <= function["memory"] \
                and duration <= function["timeout"] * 1000:
            # too large to answer: the server's size rules, as for a result it was sent
            described = end.get("buffers") if isinstance(end.get("buffers"), dict) else None
            try:
                buffer_bytes = buffers.nbytes(described) if described else 0
            except buffers.BufferFileError:
                buffer_bytes = 0
            error = self.sizes.result_error(function, len(body or b""), buffer_bytes) or {
                "errorType": "Runtime.InvalidResult",
                "errorMessage": "the environment could not answer this result; it was dropped"}
            if described is not None and self.files is not None:
                self.files.discard({"file": described.get("file")})
            self._end(inv, FAILED, error, None, self._report(duration, function["memory"], round(peak),
                                                             _init_of(start)[0]))
            return
        if end.get("outcome") == "error" and end.get("errorType") == "Runtime.OutOfMemory":
            kind = "error"
        elif end.get("oom") or peak > function["memory"]:
            kind = "oom"
        else:
            kind = "timeout"
        # what a backend's Outcome carries (backends/base.py), for outcomes.failure
        outcome = SimpleNamespace(kind=kind, header=end, body=bytes(body or b""), duration_ms=duration,
                                  max_memory_mb=peak, returncode=None, phase="invoke", init_ms=None)
        self._end_failure(inv, outcome, _init_of(start)[0])

    # ---- the end of a lease ----------------------------------------------------------------

    def _lease_over(self, lease: Lease) -> None:
        """The environment gave the lease back, or died (then what ran ends with its death)."""
        self._fold(lease)
        if lease.handle.death is not None and lease.starts:
            self.spawn(self._lease_died(lease))
            return
        if lease.starts:  # given back with a start and no end: the runtime failed mid-invocation
            log.error("lease %s ended with %d invocations started and not ended: %s", lease.id,
                      len(lease.starts), ", ".join(lease.starts))
            for rid, start in list(lease.starts.items()):
                inv = self._promote(lease, rid, start)
                if inv.deadline is not None:
                    inv.deadline.cancel()
                error = {"errorType": "Runtime.ExitError",
                         "errorMessage": f"RequestId: {rid} Error: the execution environment gave its "
                                         f"lease back without recording how this invocation ended "
                                         f"(the runtime failed); it may have run partly. Invoke it again."}
                self._end(inv, FAILED, error, None, self._report(
                    (time.time() - _num(start.get("t"), time.time())) * 1000, lease.function["memory"], 0,
                    _init_of(start)[0]))
            lease.starts.clear()
        self._lease_done(lease)

    async def _lease_died(self, lease: Lease) -> None:
        outcome = await lease.handle.death
        if not self._killing_runs:  # a stop's kill is not the function's: the rows stay running
            for rid, start in list(lease.starts.items()):
                inv = self._promote(lease, rid, start)
                if inv.deadline is not None:
                    inv.deadline.cancel()
                # what it printed before it died, read from its pipes after the death: in its
                # log, and in the error's last lines, as on the server's path
                for _, stream, line in getattr(outcome, "output", None) or ():
                    self._log(inv, stream, line)
                if lease.handle.broken:
                    error = {"errorType": "Runtime.JournalCorrupt",
                             "errorMessage": f"RequestId: {rid} Error: {lease.handle.broken}: the "
                                             f"handler wrote into the runtime's own files, so its "
                                             f"execution environment was stopped and how this "
                                             f"invocation ended could not be read. Do not write to "
                                             f"file descriptors the handler did not open."}
                    self._end(inv, FAILED, error, None, self._report(
                        outcome.duration_ms, lease.function["memory"], round(outcome.max_memory_mb),
                        _init_of(start)[0]))
                    continue
                self._end_failure(inv, outcome, _init_of(start)[0])
        else:
            for rid, start in list(lease.starts.items()):
                self._promote(lease, rid, start)
        lease.starts.clear()
        self._lease_done(lease)

    def _lease_done(self, lease: Lease) -> None:
        self._commit()  # promoted ends are stored before the journal that holds them is removed
        self.leases.pop(lease.id, None)
        self.slots.give_back(lease.function, None)
        self.backend.end_lease(lease.handle)
        # The callbacks hold the lease (lease -> handle -> callback -> lease): without them the
        # two are freed now, not whenever the cycle collector next looks at old objects (until
        # then each kept its journal reader's buffer: the server's memory crept up map by map).
        handle = lease.handle
        handle.on_end = handle.on_fold = None
        self._admit()

    # ---- cancel and watch of leased invocations --------------------------------------------

    def settle_leased(self, request_ids) -> None:
        """Fold the journals and promote any of ``request_ids`` that runs under a lease, so that
        ``active`` (cancel, watch) or the store (a read) has each one the journals know."""
        if not self.leases:
            return
        self.fold_leases()
        wanted = set(request_ids)
        for lease in list(self.leases.values()):
            for rid in wanted & set(lease.starts):
                self._promote(lease, rid, lease.starts[rid])

    def cancel_unstarted(self, request_id: str) -> None:
        """A cancel for a request id no journal shows (yet): applied if it starts soon."""
        if self.leases:
            self._lease_cancels[request_id] = time.time()

    def revoke_leases(self, name: str | None = None, idle_only: bool = False) -> None:
        """Revoke the leases (of function ``name``; ``idle_only``: those running nothing now, at
        the next turn of the loop: see :meth:`_revoke_idle`)."""
        if idle_only:
            if self._idle_revoke is None:
                self._idle_revoke, self._idle_revoke_name = self.clock.call_later(0, self._revoke_idle), name
            elif self._idle_revoke_name != name:
                self._idle_revoke_name = None  # asked for two functions: every idle one
            return
        for lease in list(self.leases.values()):
            if name is not None and lease.function["name"] != name:
                continue
            if not lease.revoked and not lease.handle.ended:
                lease.revoked = True
                lease.handle.revoke()

    def _revoke_idle(self) -> None:
        """Revoke the leases running nothing now.  What runs is known once a journal is read to
        its end, so each is folded first (in batches: a backlog is not read in at once, and not
        inside the submission that asked, which may be enqueueing a batch)."""
        self._idle_revoke, name = None, self._idle_revoke_name
        for lease in list(self.leases.values()):
            if lease.revoked or lease.handle.ended or (name is not None and lease.function["name"] != name):
                continue
            self._fold(lease)
            if lease.handle.running is None and not lease.revoked and not lease.handle.ended:
                lease.revoked = True
                lease.handle.revoke()


_FEED_FIELDS = ("request_id", "function", "version", "status", "created_at", "started_at", "ended_at",
                "error_type", "duration_ms", "max_memory_used_mb", "environment_id", "init_type")


def _summary(start: dict) -> str:
    """The row's input summary, as the server's own path writes it (a pickle is only measured)."""
    if start.get("encoding") == "json":
        return _text(start.get("summary"), "")[:200]
    return input_summary(b"", "pickle", buffer_bytes=int(_num(start.get("nbytes"))))


def _handler_lines(end: dict) -> list:
    """A clean end's handler lines, as stored: ``(ts, stream, line)``."""
    return [(_num(e[0]), _text(e[1], "stdout"), _text(e[2], "")) for e in end.get("logs") or ()
            if isinstance(e, list) and len(e) == 3 and e[1] != "platform"]


def _init_of(start: dict) -> tuple:
    """``(Init Duration, INIT lines)`` of the cold start a start record carries (the first
    invocation its environment ran: kernel_workers/lease.py), else ``(None, [])``."""
    init = start.get("init")
    if not isinstance(init, dict) or isinstance(init.get("ms"), bool) or not isinstance(init.get("ms"), (int, float)):
        return None, []
    lines = [(_num(e[0]), _text(e[1], "stdout"), _text(e[2], "")) for e in init.get("lines") or ()
             if isinstance(e, list) and len(e) == 3]
    return float(init["ms"]), lines


def _flat(header: dict) -> dict:
    """A clean ``end`` record carries the done item the client got (``done``): its fields, with
    the record's own (kernel_workers/lease.py)."""
    done = header.get("done")
    if header.get("k") == "end" and isinstance(done, dict):
        return {**done, "k": "end", "t": header.get("t"), "clean": True}
    return header


def _with_lines(header: dict, lines: list) -> dict:
    """An end record with the lines its ``lines`` records held first (kernel_workers.journal):
    a clean end's ``logs``, another's ``lines``; a copy (records may be folded again)."""
    key = "logs" if header.get("clean") else "lines"
    return {**header, key: [list(e) for e in lines] + list(header.get(key) or ())}


def _num(value, default: float = 0.0) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _text(value, default):
    return value if isinstance(value, str) else default
