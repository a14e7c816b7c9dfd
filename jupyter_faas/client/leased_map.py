"""A ``map`` through leased environments: items straight to warm environments, in batches.

The server's path costs each item a trip through the server (its row, its start, its end, a
frame each way).  Here the map's items go straight to environments the server leased to this
client (:mod:`.lease`; the server's side: :mod:`jupyter_faas.server.engine.leases`), several
items to a frame, results coming back several to a frame, while the environment still runs,
records, limits and reports **each item as its own invocation**: its own start and end record
(so its own row), its own deadline (from its own start), its own Max Memory Used and log lines,
its own REPORT.  Nothing in the record tells a leased item from one the server sent.

A thread of its own (``faas-leased-map``) drives it, as the connection's IO thread drives the
websocket: it sends each lease at most ``WINDOW`` unanswered items, reads results as they come
(so neither side ever blocks on a full socket), and takes more leases as the server starts more
environments for the map (``leases`` frames on the map's direct socket, after the first answer).
Items never started anywhere (the lease ended first, ``not_started``) go the server's way
(:meth:`~.connection.Connection.submit_many`); items whose end only the server can tell
(``ended``, or a lease that broke mid-item) are asked of the server (``watch``), and those it has
no record of were never started, so they go the server's way too.
"""

from __future__ import annotations

import collections
import os
import threading
import time

import psutil

from kernel_workers import reports, wire

from . import waiting
from .lease import take_leases

#: unanswered items a lease may hold (queued in its environment or running): WINDOW_START (the
#: one running: until an item ends, nothing says it will end soon, and what waits behind a long
#: one cannot move to a lease granted meanwhile), doubling on each of its answers toward as many as take WINDOW_BUDGET_MS
#: at the mean duration of the map's items so far, up to WINDOW.  Quick items flow in batches;
#: when some items are slow (the mean of a mix is its slow items'), an environment holds few
#: behind one (items queued in an environment cannot move to an idle one: a static share of a
#: mixed tail made a map of 10% slow items twice as long)
WINDOW_START = 1
#: once items have ended: at least one running and one next (the next starts without waiting
#: for a round trip to the client)
WINDOW_MIN = 2
WINDOW = 128
WINDOW_BUDGET_MS = 5.0
#: a lease whose oldest unanswered item went out this long (seconds) past when the items ahead
#: of it should have ended is busy with a slow one: it gets no more until that ends (the items
#: it would hold run in other environments)
BUSY_S = 0.002
#: an item sent this long ago (seconds) is followed through the server as well (``watch``): its
#: lines stream live, as on the server's path.  The server's lease tick (LEASE_TICK_S, 0.1 s):
#: from then on the server may read a running item's output itself, and those lines reach
#: this client only through a watch (an item ending before its watch lost them from the view)
WATCH_AFTER_S = 0.1
#: items per frame
BATCH = 64
#: a map without ``concurrency`` starts with a lease per core (connection.MAP_LEASES) and takes
#: more while its items mostly wait (sleep, I/O: their CPU time under WAITING_CPU_SHARE of their
#: duration, each GROW_MIN_MS or more), up to one per queued item, as the server's path starts an
#: environment per queued item within its memory budget (the server grants what its slots
#: allow, at most GROW_MAX per request); an answer with none waits GROW_RETRY_S to ask again.
#: Items that compute gain nothing from more environments than cores, so they get none.
GROW_MIN_MS = 5.0
WAITING_CPU_SHARE = 0.25
GROW_MAX = 64
GROW_RETRY_S = 0.5
#: before any item has ended (long items: nothing to average yet), the environments' CPU time is
#: read with psutil (leases are on this machine) at most this often (seconds); items that mostly
#: waited since the last look grow the map as ended ones would
GROW_PROBE_S = 0.2
#: lines of an item read back from the store when the server may have read some of them
STORED_LINES = 10_000
_MADE = ("START RequestId:", "END RequestId:", "REPORT RequestId:", "[ERROR]")


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system, seconds), or None if it cannot be read."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


class ServerGone(Exception):
    """The map's direct socket to the server broke (the server stopped or died)."""


class LeasedMap:
    """One map's items through leases: :meth:`start`, :meth:`submit` (any number of times),
    :meth:`finish`; futures end on the driver thread."""

    def __init__(self, conn, pool, function: str, version, want: int, logs: bool, group=None,
                 grow: bool = False):
        self.conn = conn
        self.pool = pool                # the connection's DirectPool
        self.function = function
        self.version = version
        self.want = want
        self.logs = logs
        self.group = group              # the map's concurrency cap, for what goes the server's way
        self.channel = None             # a DirectChannel of the pool, the map's for its life
        self.leases: list = []          # [ClientLease, unanswered count, window]
        self.queue: collections.deque = collections.deque()  # (fut, payload) not sent yet
        self.sent: dict = {}            # request id -> (fut, payload, lease entry)
        self.asked: dict = {}           # request id -> (fut, payload): asked of the server (watch)
        self.watched: set = set()       # request ids followed live through the server too
        #: request id -> watches sent whose answer (``done`` or ``unknown``) has not come: an
        #: ``unknown`` answers one watch, and a later one's (sent after its lease broke) may differ
        self.unanswered: collections.Counter = collections.Counter()
        self.streamed: set = set()      # request ids whose lines came live from the server
        self.sent_at: dict = {}         # request id -> when it was sent (time.monotonic())
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.input_done = False
        #: the driver ended early: "handed over" (the server went away) or the error it gave up
        #: with; items submitted after that go the server's way or fail the same
        self.gone: str | BaseException | None = None
        self.starting = 0               # environments the server is starting for this map
        self.item_ms: float | None = None  # the items' mean duration so far (ms), see WINDOW
        self._ms_total, self._ms_count = 0.0, 0
        self._cpu_total = 0.0              # their CPU time (ms), see GROW_MIN_MS
        self.grow = grow                   # no ``concurrency``: more leases while items wait
        self.asking = False                # a ``lease`` request of the driver's is unanswered
        self.grow_after = 0.0              # time.monotonic() before which it asks no more
        self._probed: dict = {}            # environment pid -> (time.monotonic(), CPU seconds)
        self._probe_at = 0.0               # time.monotonic() of the next look at them
        self.thread = None

    # ---- the caller's side -------------------------------------------------------------------

    def start(self) -> bool:
        """Ask for the leases; False (and nothing happened) when the server grants none now and
        starts none for this map: the caller goes the server's way."""
        try:
            self.channel = self.pool.take()
        except Exception:  # noqa: BLE001 - no direct socket now: the server's way
            return False
        ok = False
        # the leases of the last map of this version first (DirectPool.keep_leases)
        for lease in self.pool.kept_leases((self.function, self.version), self.want):
            self.leases.append([lease, 0, WINDOW_START, collections.deque()])
        try:
            ch = self.channel
            ch.channel.buffered = False  # descriptors follow a ``leases`` frame, now and later
            if len(self.leases) < self.want:
                ch.channel.send("lease", function=self.function, version=self.version,
                                want=self.want - len(self.leases), start=True)
                header, body = ch.channel.recv()
                while header["k"] != "leases":  # a late frame of an earlier call on this socket
                    header, body = ch.channel.recv()
                self._read_leases((header, body))
            ok = bool(self.leases) or self.starting > 0
        except (OSError, EOFError, wire.ProtocolError):
            for entry in self.leases:
                entry[0].close()
            self.leases = []
            self.channel.close()
            self.channel = None
            return False
        if not ok:
            self.channel.channel.buffered = True
            self.pool.give_back(self.channel)
            self.channel = None
            return False
        self.thread = threading.Thread(target=self._run, name="faas-leased-map", daemon=True)
        self.thread.start()
        return True

    def submit(self, items) -> None:
        """``items``: ``[(future, payload), ...]`` to run."""
        large = [(fut, payload) for fut, payload in items if payload.buffers]
        if large:  # arrays in buffer files go the server's way (see DirectChannel.call)
            items = [(fut, payload) for fut, payload in items if not payload.buffers]
            self.conn.submit_many(large, self.function, queue=True, logs=self.logs,
                                  version=self.version, group=self.group)
        for fut, _ in items:
            fut._leased = self
        with self.lock:
            gone = self.gone
            if gone is None:
                self.queue.extend(items)
        if gone is None:
            self._wake()
        elif isinstance(gone, BaseException):  # the driver gave up: as those it had
            for fut, _ in items:
                fut._fail(gone)
        else:  # the server went away: the rest of a long map goes the server's way
            self._submit_elsewhere(items)

    def finish(self) -> None:
        """No more items: the driver ends once every item sent has ended (or gone elsewhere)."""
        with self.lock:
            self.input_done = True
        self._wake()

    def join(self, timeout: float = 5.0) -> None:
        """Wait (a moment, once every item has ended) for the driver thread to end."""
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def withdraw(self, fut) -> bool:
        """Take ``fut`` back if not sent yet (True).  If it was sent, its cancel is the driver's:
        the environment does not start it if it has not, and the server kills it if it runs."""
        with self.lock:
            for i, (queued, payload) in enumerate(self.queue):
                if queued is fut:
                    del self.queue[i]
                    payload.discard(self.conn.buffer_dir)
                    return True
        fut._cancel_requested = True
        self._wake()  # see _cancel_requested
        return False

    def cancel(self, fut) -> None:
        """Cancel ``fut`` without waiting (a map's first failure cancels the rest)."""
        self.cancel_many([fut])

    def cancel_many(self, futures) -> None:
        """Cancel ``futures`` without waiting, in one pass over what is not sent yet (one
        ``withdraw`` each was a scan of the queue each: minutes for a map of 200,000 items)."""
        wanted = {id(fut) for fut in futures}
        with self.lock:
            kept, taken = collections.deque(), []
            for item in self.queue:
                (taken if id(item[0]) in wanted else kept).append(item)
            self.queue = kept
        for fut, payload in taken:
            payload.discard(self.conn.buffer_dir)
            fut._finish_cancelled(fut._cancelled_error())
        withdrawn = {id(fut) for fut, _ in taken}
        for fut in futures:
            if id(fut) not in withdrawn:
                fut._cancel_requested = True  # sent: the driver cancels it (_cancel_requested)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"w")
        except OSError:
            pass

    # ---- the driver thread -------------------------------------------------------------------

    def _run(self) -> None:
        finished = False
        try:
            self._drive()
            finished = True
        except ServerGone:
            self._hand_over()
        except Exception as exc:  # noqa: BLE001 - whatever broke, no future is left waiting
            self._abandon(exc)
        finally:
            # every item answered: its leases serve the next map of this version (kept_leases)
            idle = [entry[0] for entry in self.leases if finished and entry[1] == 0 and entry[0].usable()]
            for entry in self.leases:
                if entry[0] not in idle:
                    entry[0].close()
            self.leases = []
            if idle:
                self.pool.keep_leases((self.function, self.version), idle)
            if self.channel is not None:
                # a lease the server is still starting for this map would arrive on it later
                if self.asked or self.starting:
                    self.channel.close()
                else:
                    self.channel.channel.buffered = True
                    self.pool.give_back(self.channel)
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _drive(self) -> None:
        ch = self.channel
        while True:
            self._grow()
            self._send_some()
            self._cancel_requested()
            with self.lock:
                idle = self.input_done and not self.queue
            if idle and not self.sent and not self.asked:
                return
            if not self.leases and not self.starting and (self.queue or self.sent):
                self._fall_back(list(self.sent.values()))
                continue  # nothing of it is left here: the map may be over (not a wait for nothing)
            self._watch_long()
            socks = [self.wake_r, ch.sock] + [entry[0].sock for entry in self.leases]
            ready = waiting.readable(socks, WATCH_AFTER_S if self.sent else None)
            for sock in ready:
                if sock is self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif sock is ch.sock:
                    self._from_server()
                else:
                    entry = next(e for e in self.leases if e[0].sock is sock)
                    self._from_lease(entry)

    def _send_some(self) -> None:
        # the least loaded first; one that is busy with slow items waits for those still starting
        now = time.monotonic()
        for entry in sorted(self.leases, key=lambda e: e[1]):
            lease, unanswered, window, order = entry
            room = window - unanswered
            if room <= 0 or (unanswered and self.starting and window <= WINDOW_START):
                continue
            while order and order[0] not in self.sent:
                order.popleft()  # answered (or asked of the server): the oldest still out next
            if order and now - self.sent_at.get(order[0], now) > BUSY_S + unanswered * (self.item_ms or 0) / 1000:
                continue  # a slow item holds it: what waits for it here could run elsewhere
            with self.lock:
                if not self.queue:
                    return
                # share what is queued between the leases (those still starting too), so none
                # idles while another has a queue
                n = max(1, min(room, BATCH, -(-len(self.queue) // (len(self.leases) + self.starting))))
                batch = [self.queue.popleft() for _ in range(min(n, len(self.queue)))]
            items, bodies = [], []
            for fut, payload in batch:
                rid = reports.new_request_id()
                item = [rid, len(payload.data), getattr(fut, "input_summary", "") or ""]
                if payload.buffers:
                    item.append(payload.buffers)
                items.append(item)
                bodies.append(payload.data)
                self.sent[rid] = (fut, payload, entry)
                self.sent_at[rid] = now
                entry[3].append(rid)
            try:
                lease.channel.send("invoke", b"".join(bodies), encoding="pickle", items=items)
            except OSError:
                self._lease_broke(entry)
                continue
            entry[1] += len(batch)

    def _watch_long(self) -> None:
        """Follow the items sent a while ago through the server too: a running one's lines then
        stream live (the server reads them); its end still comes from whichever tells first."""
        now = time.monotonic()
        due = [rid for rid in self.sent if rid not in self.watched
               and now - self.sent_at.get(rid, now) >= WATCH_AFTER_S]
        if due:
            self.watched.update(due)
            self.unanswered.update(due)
            self.channel.channel.send("watch", request_ids=due, logs=self.logs)

    def _cancel_requested(self) -> None:
        by_lease: dict = {}
        for rid, (fut, _, entry) in self.sent.items():
            if fut._cancel_requested and not getattr(fut, "_lease_cancel_sent", False):
                fut._lease_cancel_sent = True
                by_lease.setdefault(id(entry), (entry, []))[1].append(rid)
        for entry, rids in by_lease.values():
            try:
                entry[0].channel.send("cancel", request_ids=rids)  # not started: never started
            except OSError:
                pass
            # started: the server kills its environment (it knows from the journal what runs)
            self.channel.channel.send("cancel", request_ids=rids)

    def _from_lease(self, entry) -> None:
        lease = entry[0]
        try:
            lease.channel.fill()
        except (OSError, EOFError, wire.ProtocolError):
            self._lease_broke(entry)
            return
        while (frame := lease.channel.pending()) is not None:
            header, body = frame
            kind = header["k"]
            if kind == "done":
                offset = 0
                for item in header["items"]:
                    self._timed((item.get("report") or {}).get("duration_ms"), item.get("cpu_ms"))
                    n = item["nbytes"]
                    rid = item["request_id"]
                    sent = self.sent.pop(rid, None)
                    sent_at = self.sent_at.pop(rid, None)
                    if sent is not None:
                        entry[1] -= 1
                        fut = sent[0]
                        _accept(fut, rid, self.version)
                        lines = item.get("logs") or []
                        if (self.logs and rid not in self.streamed and sent_at is not None
                                and time.monotonic() - sent_at >= WATCH_AFTER_S):
                            # long enough for the server to have read some of its output, and
                            # none of that came: all its lines from the store instead
                            stored = self._stored_lines(rid)
                            if stored is not None:
                                lines, item = stored, dict(item, init_logs=None, skipped=0)
                                self.watched.discard(rid)
                        if rid in self.watched:
                            self.watched.discard(rid)
                            if fut.logs and lines and lines[0][1] == "platform":
                                lines = lines[1:]  # its START came live from the server
                        elif item.get("init_logs"):
                            # the first item of its environment: its cold start's INIT lines
                            # (a watched one had them live from the server, with its START)
                            lines = item["init_logs"] + lines
                        if lines or item.get("skipped"):
                            fut._log_lines(lines, item.get("skipped", 0))
                        chunk = memoryview(body)[offset:offset + n]
                        fut._done(item, chunk if item.get("buffers") else bytes(chunk))
                    offset += n
                # this lease's window doubles toward the target on its own answers; a smaller
                # target (a slow item anywhere) shrinks every lease's at once
                target = self._window()
                entry[2] = min(entry[2] * 2, target)
                for each in self.leases:
                    each[2] = min(each[2], target)
            elif kind == "not_started":
                back = []
                for rid in header.get("request_ids") or ():
                    sent = self.sent.pop(rid, None)
                    if sent is not None:
                        entry[1] -= 1
                        self.sent_at.pop(rid, None)
                        if sent[0]._cancel_requested:
                            sent[0]._finish_cancelled(sent[0]._cancelled_error())
                        else:
                            back.append(sent)
                self._fall_back(back)
            elif kind == "ended":
                self._ask(header.get("request_ids") or (), entry)

    def _stored_lines(self, rid: str) -> list | None:
        """An ended item's lines as stored (its INIT's, its handler's; not the START, [ERROR],
        END and REPORT made from its row), or None if the server cannot say now."""
        try:
            rows = self.conn.request("GET", f"/faas/api/invocations/{rid}/logs",
                                     params={"limit": STORED_LINES})["logs"]
        except Exception:  # noqa: BLE001 - what the environment sent is shown instead
            return None
        return [[r["ts"], r["stream"], r["line"]] for r in rows
                if not (r["stream"] == "platform" and r["line"].startswith(_MADE))]

    def _timed(self, duration_ms, cpu_ms=None) -> None:
        if isinstance(duration_ms, (int, float)) and duration_ms >= 0:
            self._ms_total += duration_ms
            self._ms_count += 1
            self.item_ms = self._ms_total / self._ms_count
            # unknown (an older environment): counted as computing, so no growth on a guess
            self._cpu_total += cpu_ms if isinstance(cpu_ms, (int, float)) else duration_ms

    def _more_wanted(self, queued: int) -> int:
        """How many more leases to ask for now, with ``queued`` items not sent: while the items
        mostly wait (GROW_MIN_MS), one per queued item not already covered by one starting."""
        if not self.grow or self.asking or not queued or time.monotonic() < self.grow_after:
            return 0
        if self.item_ms is None:
            if not self._running_items_wait():
                return 0
        elif self.item_ms < GROW_MIN_MS or self._cpu_total > WAITING_CPU_SHARE * self._ms_total:
            return 0
        return max(0, min(queued - self.starting, GROW_MAX))

    def _running_items_wait(self) -> bool:
        """No item has ended yet: whether the ones running mostly wait, by their environments'
        CPU time since the last look (GROW_PROBE_S apart; psutil, user + system)."""
        now = time.monotonic()
        if now < self._probe_at:
            return False
        self._probe_at = now + GROW_PROBE_S
        shares, known = [], True
        for entry in self.leases:
            pid = entry[0].info.get("pid")
            if not entry[1] or not isinstance(pid, int):
                continue
            cpu = _cpu_seconds(pid)
            if cpu is None:
                continue
            before = self._probed.get(pid)
            self._probed[pid] = (now, cpu)
            if before is None:
                known = False
            elif now > before[0]:
                shares.append((cpu - before[1]) / (now - before[0]))
        return known and bool(shares) and sum(shares) / len(shares) < WAITING_CPU_SHARE

    def _grow(self) -> None:
        if not self.grow or self.asking:
            return
        with self.lock:
            queued = len(self.queue)
        want = self._more_wanted(queued)
        if not want:
            return
        try:
            self.channel.channel.send("lease", function=self.function, version=self.version,
                                      want=want, start=True)
        except OSError as exc:
            raise ServerGone(f"the direct socket broke: {exc}") from exc
        self.asking = True

    def _window(self) -> int:
        """Unanswered items per lease: WINDOW_BUDGET_MS of work at the items' recent duration."""
        if self.item_ms is None:
            return WINDOW_START
        return max(WINDOW_MIN, min(WINDOW, int(WINDOW_BUDGET_MS / max(self.item_ms, 0.001))))

    def _lease_broke(self, entry) -> None:
        """The environment died or let go: what it had is asked of the server."""
        if entry in self.leases:
            self.leases.remove(entry)
        entry[0].close()
        self._ask([rid for rid, sent in self.sent.items() if sent[2] is entry], entry)

    def _ask(self, rids, entry) -> None:
        asked = {}
        for rid in rids:
            sent = self.sent.pop(rid, None)
            if sent is not None:
                entry[1] -= 1
                self.asked[rid] = sent
                asked[rid] = sent
        if asked:
            self.unanswered.update(list(asked))
            try:
                self.channel.channel.send("watch", request_ids=list(asked), logs=self.logs)
            except OSError as exc:
                raise ServerGone(str(exc)) from exc

    def _from_server(self) -> None:
        ch = self.channel
        try:
            header, body = ch.channel.recv()
        except (OSError, EOFError, wire.ProtocolError) as exc:
            raise ServerGone(f"the direct socket broke: {exc}") from exc
        kind = header["k"]
        if kind == "leases":
            self._read_leases((header, body))
        elif kind == "done":
            offset = 0
            for item in header["items"]:
                n = item["nbytes"]
                rid = item["request_id"]
                self._answered(rid)
                sent = self.asked.pop(rid, None)
                if sent is None and rid in self.watched and rid in self.sent:
                    sent = self.sent.pop(rid)  # the server told first (its environment's done is stale)
                    sent[2][1] -= 1
                    self.sent_at.pop(rid, None)
                self.watched.discard(rid)
                if sent is not None:
                    fut = sent[0]
                    _accept(fut, rid, self.version)  # ended before any line named it started
                    lines = item.get("logs") or []
                    if self.logs and not lines and rid not in self.streamed:
                        # it ended before the server followed it (the server answers from its
                        # row, without lines) and its environment's done is stale now
                        lines = self._stored_lines(rid) or []
                    if lines or item.get("skipped"):
                        fut._log_lines(lines, item.get("skipped", 0))
                    chunk = memoryview(body)[offset:offset + n]
                    fut._done(item, chunk if item.get("buffers") else bytes(chunk))
                offset += n
        elif kind == "log":
            for rid, lines in (header.get("logs") or {}).items():
                sent = self.asked.get(rid) or (self.sent.get(rid) if rid in self.watched else None)
                if sent is not None:
                    _accept(sent[0], rid, self.version)  # started: in its journal
                    self.streamed.add(rid)
                    sent[0]._log_lines(lines, (header.get("skipped") or {}).get(rid, 0))
        elif kind == "unknown":
            rids = [rid for rid in header.get("request_ids") or () if self._answered(rid) == 0]
            # not in any journal: never started, so never accepted (unless a later watch, sent
            # once its lease broke, is still to answer: the journal may have it by then)
            self._fall_back([self.asked.pop(rid) for rid in rids if rid in self.asked])
            for rid in rids:  # followed while still queued in its environment: follow it later
                if rid in self.watched:
                    self.watched.discard(rid)
                    if rid in self.sent_at:
                        self.sent_at[rid] = time.monotonic()
        elif kind == "lease_failed":
            self.starting = max(0, self.starting - int(header.get("count") or 1))
            token = header.get("init_failure")
            if isinstance(token, str):
                # Its INIT failed: the item that would have run there next fails with that error,
                # through the server, which records it as it records the item that waited for a
                # failed cold start on its own path.  None left to run: the server logged it.
                with self.lock:
                    item = self.queue.popleft() if self.queue else None
                if item is not None:
                    self.conn.submit_many([item], self.function, queue=True, logs=self.logs,
                                          version=self.version, group=self.group, init_failure=token)

    def _answered(self, rid: str) -> int:
        """One watch of ``rid`` was answered; how many are still to answer."""
        left = self.unanswered[rid] - 1
        if left > 0:
            self.unanswered[rid] = left
        else:
            self.unanswered.pop(rid, None)
        return max(left, 0)

    def _read_leases(self, frame) -> None:
        """A ``leases`` answer (and its descriptors): more environments for this map."""
        header, _ = frame
        items = header.get("items") or []
        if header.get("started"):  # one the server started for this map (passed, or lost)
            self.starting = max(0, self.starting - max(1, len(items)))
        else:  # the answer to a request (the first, or _grow's)
            self.asking = False
            if not items and not header.get("starting"):
                self.grow_after = time.monotonic() + GROW_RETRY_S  # no room now
        self.starting += int(header.get("starting") or 0)
        for lease in take_leases(self.channel, header):
            self.leases.append([lease, 0, self._window(), collections.deque()])

    def _fall_back(self, sent) -> None:
        """Items never started through a lease: the server's way, the same futures (those
        cancelled meanwhile end cancelled: they never ran)."""
        items = []
        for fut, payload, *_ in sent:
            if fut._cancel_requested:
                fut._finish_cancelled(fut._cancelled_error())
            elif not fut.done():
                items.append((fut, payload))
        self._submit_elsewhere(items)
        if not self.leases and not self.starting:
            with self.lock:
                rest, self.queue = list(self.queue), collections.deque()
            self._submit_elsewhere(rest)
            if self.sent:
                sent_items, self.sent = list(self.sent.values()), {}
                self._fall_back(sent_items)

    def _hand_over(self) -> None:
        """The server went away: what may have started is asked of the next one (the connection's
        re-attach, as for a websocket call: a restart folds the journals first); what it has no
        record of never started, so it is sent again (``_if_unknown``); the rest is sent to it.
        The connection finds the next server (the runtime file's, or one it starts after
        RESTART_GRACE_S) before it sends either."""
        self.conn.server_lost()
        for entry in self.leases:
            entry[0].close()
        self.leases, self.starting = [], 0
        follow = {}
        for rid, (fut, payload, *_) in [*self.sent.items(), *self.asked.items()]:
            if fut.done():
                continue
            fut._if_unknown = (lambda fut=fut, payload=payload: self.conn.submit_many(
                [(fut, payload)], self.function, queue=True, logs=self.logs, version=self.version,
                group=self.group))
            fut._request_id = rid  # its REPORT and error name it, if the server knows it
            fut._leased = None     # the server's now: a cancel goes there (it waited 30 s here)
            follow[rid] = fut
        self.sent, self.asked = {}, {}
        with self.lock:
            rest, self.queue = list(self.queue), collections.deque()
            self.input_done = True
            self.gone = "handed over"
        if follow:
            self.conn.reattach(follow)
        # never sent: the server's way, which waits for the next server as the re-attach does
        self._submit_elsewhere(rest)
        self.channel.close()
        self.channel = None

    def _submit_elsewhere(self, items) -> None:
        """``[(future, payload), ...]`` the server's way, as the map's items are without leases."""
        for fut, _ in items:
            fut._leased = None  # a cancel of it goes to the server (function._cancel)
        if items:
            self.conn.submit_many(items, self.function, queue=True, logs=self.logs,
                                  version=self.version, group=self.group)

    def _abandon(self, exc: BaseException) -> None:
        from .. import errors
        err = errors.ServerError(f"the map's leased environments could not be used: {exc}")
        with self.lock:
            rest, self.queue = list(self.queue), collections.deque()
            self.gone = err
        for fut, *_ in [*rest, *self.sent.values(), *self.asked.values()]:
            fut._fail(err)


def _accept(fut, rid: str, version) -> None:
    """The item has a record (its request id): once, as the dispatcher does."""
    if fut._request_id is None and not fut.done():
        fut._accepted(rid, version)
