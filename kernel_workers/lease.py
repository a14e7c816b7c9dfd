"""An environment serving a lease: invocations straight from one client, recorded in a journal.

The server leases an idle warm environment to one client: a ``lease`` frame on the control
socket, then three descriptors (``socket.send_fds``, as the zygote's fork): this environment's
end of a socket pair whose other end the client got, and read ends of this process's own
stdout and stderr pipes.  Until the lease ends, invocations come from the client over that
socket and cross no other process: two hops a call instead of four, and no store commit on the
way (the server folds the journal into its store, off the call's path).

  client -> environment  ``invoke`` {encoding, items: [[request_id, nbytes, summary, buffers?], ...]}
                         body: the payloads, concatenated in item order
                         ``cancel`` {request_ids}: those not started yet are not run
  (environment -> server, on the control socket: ``lease_ended`` {lease_id} once it let go;
   ``buffers_spent`` {request_id} after an invocation with an argument buffers' file ended;
   ``fold`` {request_id} after one whose output the server read ended (both: fold now);
   ``result_file`` as when the server sends the invocations)
  (server -> environment, on the control socket: ``reading`` {request_id} before the server
   first reads a promoted invocation's output, holding the output lock; ``revoke``; ``stop``)
  environment -> client  ``done`` {items: [...]}, body: the results, concatenated; each item is
                         the invocation session's done item (request_id, status, error,
                         report, function, version, nbytes, buffers?, logs, skipped?,
                         init_logs?: the INIT lines of the invocation carrying the cold start)
                         ``ended`` {request_ids}: ended in a way only the server may judge
                         (timed out, over its memory, MemoryError), or ended after the server
                         read some of its output (only the server's done has every line):
                         ask it (``watch``)
                         ``not_started`` {request_ids}: never started (cancelled before, or
                         the lease ended first), so never recorded: send them again

Records: wire frames appended to the lease's journal (a file the server made; one ``write``
each, durable against this process's death and the server's as SQLite's WAL at
synchronous=NORMAL is):

  ``lease`` {lease_id, function, version, lambda_version, memory_mb}  first, once: what every
            invocation of the journal shares (a start record of an older runtime repeats them)
  ``start`` {request_id, t, summary, encoding, buffers?, init?}   written before the handler
            runs: the invocation is accepted.
            ``init`` {ms, lines}: the first invocation run here carries the cold start no
            invocation reported yet (the lease frame's ``init``: an environment started for the
            lease, or leased before its first call): its Init Duration (in its REPORT, billed
            with it) and INIT lines (INIT_START, what INIT printed), as on the server's path
  ``lines`` {request_id}  body: JSON lines ([time, stream, line], ...); an invocation's lines
            when too many for its end record's header (kernel_workers.journal), written with it
  ``end``   {t, clean, ...}  body: the result, or the pickled exception; written before the
            client is told.  ``clean``: ``done``, the done item the client got (request_id,
            status, error, report, logs, nbytes); else the raw figures for the server to judge
            (request_id, outcome,
            duration_ms, peak_mb, oom, errorType, ...)

Output: while leased, the server does not read this process's pipes; this process drains them
itself at the end of each invocation, so each line lands in the invocation that printed it.
A long (promoted) invocation's lines are read by the server meanwhile, as they come; a line it
has begun it keeps until the end of the line, which is then the first line this process drains of
that stream (the server joins them).  Both read only while holding an exclusive ``flock`` on the
journal, and the start record is written under it too: every byte is read once, by one of them,
and attributed to the invocation that was running.  When this process dies, the server drains
the pipes to their end for what was running.  The server says ``reading`` before its first read
of an invocation's output, under the lock; this process looks for that frame under the lock when
the invocation ends, so it knows whether its own lines are all of them.  If the server read some,
the client is told ``ended`` and gets the invocation's end, with every line, from the server
(a done with only this process's share would lose the lines the server had read and not sent).

The deadline, the memory limit and cancelling a running invocation stay the server's: it reads
the journal (``start`` says what runs since when) and kills this process, as for any other.
"""

from __future__ import annotations

import json
import os
import resource
import select
import selectors
import socket
import time
from collections import deque

from . import buffers, journal, reports, wire

#: results wait at most this long for company before they are sent (a map's stream of ends)
DONE_EVERY_S = 0.002
DONE_BATCH_ITEMS = 256
#: this many invocations queued is a stream of quick ones (the client sends that many only while
#: they end within milliseconds: client/leased_map.py): their results may share frames
STREAMING = 8
DONE_BATCH_BYTES = 8 << 20
#: a done frame's header at most (half what a reader takes: the frame's own keys have room)
DONE_HEADER_BYTES = wire.MAX_HEADER_BYTES // 2
#: handler lines a done item carries (the newest); the journal, so the store, keeps every one
DONE_LOG_LINES = 500
STREAMED_LINE_CHARS = 300
LINE_CUT = " …[line cut; the store has it all]"  # what ends a line cut to STREAMED_LINE_CHARS
MAX_LINE = 256 * 1024


class Meter:
    """This process's Max Memory Used per invocation: its peak RSS (reset through
    ``/proc/self/clear_refs``) and, under a cgroup, the cgroup's peak and OOM-kill count."""

    def __init__(self, cgroup: str | None, own_only: bool):
        self.own_only = own_only  # forked from a snapshot: only the cgroup's figure counts
        self.clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
        self.usage = self.oom = None
        self.near_limit_mb = 0.0  # a peak past this may be the kernel's OOM kill: look then only
        if cgroup:
            self.usage = os.open(os.path.join(cgroup, "memory.max_usage_in_bytes"), os.O_RDWR)
            self.oom = os.open(os.path.join(cgroup, "memory.oom_control"), os.O_RDONLY)
            try:
                with open(os.path.join(cgroup, "memory.limit_in_bytes")) as f:
                    self.near_limit_mb = 0.9 * int(f.read()) / (1 << 20)
            except (OSError, ValueError):
                pass
        self.kills = self._kills()

    def reset(self) -> None:
        os.write(self.clear, b"5")
        if self.usage is not None:
            try:
                os.pwrite(self.usage, b"0", 0)
            except OSError:
                pass

    def read(self) -> tuple[float, bool]:
        """(peak MB since :meth:`reset`, whether the kernel OOM-killed a process of the cgroup)."""
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        usage = None
        if self.usage is not None:
            try:
                usage = int(os.pread(self.usage, 64, 0)) / (1 << 20)
            except (OSError, ValueError):
                pass
        killed = False
        # the kernel kills in the cgroup only when its usage reached the limit, so the kill
        # count is read only after a peak near it (one read fewer per quick invocation)
        if self.oom is not None and (usage is None or usage >= self.near_limit_mb):
            kills = self._kills()
            killed, self.kills = kills > self.kills, kills
        if usage is None:
            return hwm, killed
        return (usage if self.own_only else max(hwm, usage)), killed

    def _kills(self) -> int:
        if self.oom is None:
            return 0
        try:
            text = os.pread(self.oom, 4096, 0)
            at = text.find(b"\noom_kill ")
            return int(text[at + 10:].split()[0]) if at >= 0 else 0
        except (OSError, ValueError, IndexError):
            return 0

    def close(self) -> None:
        for fd in (self.clear, self.usage, self.oom):
            if fd is not None:
                os.close(fd)


class Lease:
    """One lease, served by :meth:`serve` until it ends; ``env`` is the runtime's Environment."""

    def __init__(self, env, header: dict, fds: list[int]):
        self.env = env
        self.id = header["lease_id"]
        for fd in fds:
            os.set_inheritable(fd, False)  # never to the handler's subprocesses
        self.sock = socket.socket(fileno=fds[0])
        self.sock.setblocking(True)
        self.decoder = wire.FrameDecoder()
        self.pipes = [[fds[1], "stdout", bytearray()], [fds[2], "stderr", bytearray()]]
        for fd, _, _ in self.pipes:
            os.set_blocking(fd, False)
        self.journal = os.open(header["journal"], os.O_WRONLY | os.O_APPEND)
        self.function = header["function"]
        self.version = header["version"]            # the engine's version (the journal's lease record names it)
        self.lambda_version = header["lambda_version"]
        self.memory_mb = header["memory_mb"]
        os.write(self.journal, wire.pack("lease", lease_id=self.id, function=self.function, version=self.version,
                                         lambda_version=self.lambda_version, memory_mb=self.memory_mb))
        self.timeout_ms = header["timeout_s"] * 1000
        self.pricing = (header["per_gb_second"], header["per_request"])
        self.init_type = header.get("init_type", "on-demand")
        #: this environment's cold start, not reported by any invocation yet: ``{ms, lines}``
        #: (Init Duration; INIT_START and what INIT printed); the first invocation run here
        #: carries it, in its start record, its REPORT (billed with it) and its done item
        self.init = header.get("init") if isinstance(header.get("init"), dict) else None
        self.init_rid: str | None = None
        self.max_payload = header.get("max_payload_bytes") or float("inf")
        self.max_buffers = header.get("max_buffer_bytes") or float("inf")
        self.cgroup = header.get("cgroup")
        self.meter = Meter(self.cgroup, bool(header.get("own_only")))
        self.pending: deque = deque()  # [request_id, encoding, summary, buffers, payload]
        self.started: tuple | None = None  # (request id, time) of the last start record written
        self.items: list = []          # done items not sent yet, and their bodies
        self.bodies: list = []
        self.unsent_bytes = 0
        self.first_unsent = 0.0
        self.open = True               # the client's end may still be read and written
        #: the control socket, polled (no wait) under the output lock for ``reading``
        self.control_poll = select.poll()
        self.control_poll.register(self.env.channel.sock, select.POLLIN)

    # ---- the loop --------------------------------------------------------------------------

    def serve(self) -> str:
        """Serve until the client lets go or the server revokes; ``"stop"`` if told to stop."""
        control = self.env.channel.sock
        sel = selectors.DefaultSelector()
        sel.register(control, selectors.EVENT_READ, "control")
        sel.register(self.sock, selectors.EVENT_READ, "lease")
        outcome = "ended"
        try:
            while True:
                if self.env.deferred:
                    outcome = self._control(*self.env.deferred.pop(0))
                    if outcome:
                        return outcome
                if not self.pending:
                    self._send_done()
                events = sel.select(None if not self.pending and self.open else 0)
                for key, _ in events:
                    if key.data == "lease":
                        self._read_client()
                    else:
                        try:
                            header, body = self.env.channel.recv()
                        except EOFError:
                            return "stop"
                        outcome = self._control(header, body)
                        if outcome:
                            return outcome
                if not self.open and not self.pending:
                    return "ended"  # the client let go
                if self.items and (len(self.pending) < STREAMING or
                                   time.monotonic() - self.first_unsent >= DONE_EVERY_S):
                    # what ended waited long enough for company, or no stream of quick items is
                    # queued (the next one may be long: its result must not wait for it)
                    self._send_done()
                if self.pending:
                    self._run_batch()
        except SystemExit:
            # sys.exit() in the handler: the runtime exits, as Lambda's does.  Never a
            # lease_ended: the server reads this process's death (exit status) for what ran.
            self._send_done()
            raise
        finally:
            sel.close()
            if self.journal is not None and not _exiting():
                self._close()

    def _control(self, header: dict, body) -> str | None:
        kind = header["k"]
        if kind == "revoke":
            return "ended"
        if kind == "stop":
            return "stop"
        return None  # nothing else is sent to a leased environment

    def _read_client(self) -> None:
        decoder = self.decoder
        target = decoder.get_buffer()
        try:
            got = self.sock.recv_into(target, target.nbytes)
        except OSError:
            got = 0
        del target
        if not got:
            self.open = False
            self.pending.clear()  # never started: never recorded, and nobody to tell
            return
        try:
            decoder.buffer_updated(got)
        except wire.ProtocolError:
            self.open = False
            self.pending.clear()
            return
        frame = decoder.next_frame()
        while frame is not None:
            header, body = frame
            if header["k"] == "invoke":
                view, offset, refused = memoryview(body), 0, []
                encoding = header.get("encoding", "pickle")
                for rid, n, summary, *described in header.get("items") or ():
                    described = described[0] if described else None
                    if n > self.max_payload or (described is not None and _nbytes(described) > self.max_buffers):
                        refused.append(rid)  # over a limit: the server's way, which says so
                    else:
                        self.pending.append((rid, encoding, summary, described, view[offset:offset + n]))
                    offset += n
                if refused:
                    self._send("not_started", request_ids=refused)
            elif header["k"] == "cancel":
                wanted = set(header.get("request_ids") or ())
                dropped = [item[0] for item in self.pending if item[0] in wanted]
                if dropped:
                    self.pending = deque(item for item in self.pending if item[0] not in wanted)
                    self._send("not_started", request_ids=dropped)
            frame = decoder.next_frame()

    # ---- one invocation --------------------------------------------------------------------

    def _start_record(self, item, t: float) -> bytes:
        rid, encoding, summary, described, payload = item
        start = {"request_id": rid, "t": t, "summary": summary, "encoding": encoding,
                 "nbytes": len(payload) + (_nbytes(described) if described is not None else 0)}
        if described is not None:
            start["buffers"] = described
        if self.init is not None and self.init_rid is None:
            start["init"] = self.init  # recorded before it runs, as its start is
            self.init_rid = rid
        self.started = (rid, t)
        return wire.pack("start", **start)

    def _run_batch(self) -> None:
        """Run what is pending back to back for up to DONE_EVERY_S while a stream of them is
        queued: each end is written with the next one's start (one write), then the loop looks
        for frames again (cancel, revoke) and sends what ended."""
        batch_started = time.monotonic()
        while self.pending:
            if not self._run(self.pending.popleft(), batch_started) or len(self.pending) < STREAMING:
                return

    def _run(self, item, batch_started: float) -> bool:
        """One invocation; True if the next one's start record was written with its end."""
        rid, encoding, _, described, payload = item
        self.meter.reset()
        if self.started is None or self.started[0] != rid:
            with self._output_lock():
                os.write(self.journal, self._start_record(item, time.time()))
        started_wall = self.started[1]
        started_mono = time.monotonic()
        header = {"request_id": rid, "encoding": encoding,
                  "deadline_ms": int(started_wall * 1000 + self.timeout_ms)}
        if described is not None:
            header["buffers"] = described
        kind, body, fields = self.env.execute(header, payload, hwm=_none)
        peak, oom_killed = self.meter.read()
        ended_wall = time.time()
        duration = fields["duration_ms"]
        memory_error = kind == "error" and fields.get("errorType") == "Runtime.OutOfMemory"
        over = peak > self.memory_mb
        if over and self.cgroup and not memory_error:
            # the kernel kept what this process allocated itself under the limit; the rest of
            # its RSS is pages shared with the zygote (the server's rule, environment.py)
            peak, over = float(self.memory_mb), False
        fatal = memory_error or over or oom_killed or duration > self.timeout_ms
        clean = not fatal
        if clean and kind == "result" and (len(body) > self.max_payload or (
                "buffers" in fields and _nbytes(fields["buffers"]) > self.max_buffers)):
            clean = False  # too large to answer: the server judges it (ResponseSizeTooLarge)
        chained = False
        with self._output_lock():
            server_read = self._server_read(rid)
            lines = self._drain(ended_wall)
            if clean:
                done = self._done_item(rid, kind, fields, round(peak), lines)
                done["nbytes"] = len(body)
                encoded = journaled = json.dumps(done, separators=(",", ":")).encode()
                record = b""
                if len(encoded) > journal.INLINE_BYTES:
                    # too many lines for a header (the server refuses one over 1 MB as corrupt):
                    # they go in ``lines`` records first; the client gets them capped (_cap_lines)
                    record = journal.lines_records(rid, lines)
                    journaled = json.dumps(dict(done, logs=[]), separators=(",", ":")).encode()
                    encoded = None
                record += wire.pack_raw(b'{"k":"end","v":%d,"clean":true,"t":%r,"done":%s}' % (
                    wire.PROTOCOL_VERSION, ended_wall, journaled), body)
                if (len(self.pending) >= STREAMING and described is None and self.pending[0][3] is None
                        and time.monotonic() - batch_started < DONE_EVERY_S):
                    record += self._start_record(self.pending[0], time.time())
                    chained = True
                os.write(self.journal, record)
            else:
                raw = {k: v for k, v in fields.items() if k not in ("request_id", "encoding")}
                before = b""
                if len(json.dumps(lines)) > journal.INLINE_BYTES:
                    before, lines = journal.lines_records(rid, lines), []
                os.write(self.journal, before + wire.pack(
                    "end", body, **raw, request_id=rid, t=ended_wall, clean=False, outcome=kind,
                    peak_mb=peak, oom=oom_killed, lines=lines))
        if not clean:
            # Timed out, over the limit, a MemoryError, a result too large: the server judges it
            # from the journal (as it would have, killing this process for the first three);
            # the client asks the server.
            self._send_done()
            self._send("ended", request_ids=[rid])
            if fatal:
                self._close()
                os._exit(137)
            return False
        if server_read:
            # Its lines are split between the server (read as they came) and this process: the
            # client asks the server, whose done has them all, and the server folds now.
            self._send_done()
            self._send("ended", request_ids=[rid])
            self.env.channel.send("fold", request_id=rid)
            return chained
        if described is not None:
            # its argument's file is spent: the server folds now and reuses the file's pages
            self.env.channel.send("buffers_spent", request_id=rid)
        if encoded is not None and _needs_cap(done):
            encoded = None  # the client gets fewer (or shorter) lines than the journal has
        self.items.append((done, encoded))
        self.bodies.append(body)
        if len(self.items) == 1:
            # the batch's age counts from its first item's start: a long item's result goes out
            # before the next item runs, quick ones share a frame for up to DONE_EVERY_S of work
            self.first_unsent = started_mono
        self.unsent_bytes += len(body)
        if len(self.items) >= DONE_BATCH_ITEMS or self.unsent_bytes >= DONE_BATCH_BYTES:
            self._send_done()
        return chained

    def _done_item(self, rid, kind, fields, peak_mb, lines) -> dict:
        init = self.init if rid == self.init_rid else None
        rep = reports.report(fields["duration_ms"], self.memory_mb, peak_mb, init and init.get("ms"),
                             *self.pricing)
        rep["init_type"] = self.init_type
        error = None
        if kind == "result":
            status = "succeeded"
        else:
            status = reports.FAILED
            error = {k: fields.get(k) for k in ("errorType", "errorMessage", "errorModule",
                                                "stackTrace", "stage")}
        # Its handler's lines only: START, [ERROR], END and REPORT are the row's figures, so the
        # store makes them when they are read (server/engine/platform_lines.py), and a client
        # has the figures in ``report``.
        # (no function or version: the client and the server know them from the lease)
        # ``cpu_ms``: the handler's CPU time; a map whose items mostly wait takes more leases
        done = {"request_id": rid, "status": status, "error": error, "report": rep, "logs": lines,
                "cpu_ms": round(fields.get("cpu_ms") or 0.0, 2)}
        if init is not None:
            done["init_logs"] = init.get("lines") or []  # logged before its own (the client's copy)
        if "buffers" in fields:
            done["buffers"] = fields["buffers"]
        if "imported" in fields:
            done["imported"] = fields["imported"]
        return done

    # ---- output ----------------------------------------------------------------------------

    def _server_read(self, rid: str) -> bool:
        """Whether the server read any of ``rid``'s output.  Called under the output lock: the
        server says ``reading`` while holding it, before its first read, so a server that read
        a byte of it has said so by now.  Other frames wait for the serve loop (``deferred``)."""
        found = False
        if self.env.deferred:  # came while the runtime waited for a result file
            keep = []
            for header, body in self.env.deferred:
                if header["k"] == "reading":
                    found = found or header.get("request_id") == rid
                else:
                    keep.append((header, body))
            self.env.deferred[:] = keep
        while self.control_poll.poll(0):
            try:
                header, body = self.env.channel.recv()
            except (EOFError, OSError, wire.ProtocolError):
                break  # the server is gone: the serve loop finds out
            if header["k"] == "reading":
                found = found or header.get("request_id") == rid
            else:
                self.env.deferred.append((header, body))
        return found

    def _output_lock(self):
        return journal.Locked(self.journal)

    def _drain(self, ts: float) -> list:
        """This invocation's output lines (what its pipes hold now, the last partial line too)."""
        out = []
        for entry in self.pipes:
            fd, stream, buf = entry
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if not data:
                    break
                buf += data
            if not buf:
                continue
            text = bytes(buf)
            buf.clear()
            for raw in text.split(b"\n"):
                while len(raw) > MAX_LINE:
                    out.append([ts, stream, raw[:MAX_LINE].decode("utf-8", "replace")])
                    raw = raw[MAX_LINE:]
                out.append([ts, stream, raw.decode("utf-8", "replace").rstrip("\r")])
            if text.endswith(b"\n"):
                out.pop()  # the empty piece after the last newline
        return out

    # ---- to the client ---------------------------------------------------------------------

    def _send_done(self) -> None:
        if not self.items:
            return
        items, bodies = self.items, self.bodies
        self.items, self.bodies, self.unsent_bytes, self.first_unsent = [], [], 0, 0.0
        for frame in done_frames(items, bodies):
            self._send_raw(frame)

    def _send_raw(self, frame: bytes) -> None:
        if not self.open:
            return
        try:
            self.sock.sendall(frame)
        except OSError:
            self.open = False  # the client is gone; the journal has every end

    def _send(self, kind: str, body: bytes = b"", **fields) -> None:
        if not self.open:
            return
        prefix, payload = wire.pack_parts(kind, body, **fields)
        try:
            self.sock.sendall(prefix + bytes(payload) if len(payload) < 65536 else prefix)
            if len(payload) >= 65536:
                self.sock.sendall(payload)
        except OSError:
            self.open = False  # the client is gone; the journal has every end

    def _close(self) -> None:
        """End the lease: tell the client what never started, hand the output back, tell the server."""
        if self.journal is None:
            return
        if self.pending:
            self._send("not_started", request_ids=[item[0] for item in self.pending])
            self.pending.clear()
        self._send_done()
        try:
            self.sock.close()
        except OSError:
            pass
        for fd, _, _ in self.pipes:
            os.close(fd)  # what is left in them, the server reads again
        os.close(self.journal)
        self.journal = None
        self.meter.close()
        try:
            self.env.channel.send("lease_ended", lease_id=self.id)
        except OSError:
            pass


def done_frames(items: list, bodies: list) -> list[bytes]:
    """``done`` frames for ended invocations: ``items`` are ``(done item, its JSON or None)``,
    ``bodies`` their results' bytes, in order.  Each frame's header stays under
    DONE_HEADER_BYTES: a batch of items with hundreds of long lines each shares several
    frames, never one the reader refuses (wire.MAX_HEADER_BYTES).  An item alone over it
    travels with its lines cut to the newest that fit (the journal has them all)."""
    frames, parts, size, first = [], [], 0, 0
    for i, (done, encoded) in enumerate(items):
        if encoded is None or "imported" in done:
            done.pop("imported", None)
            _cap_lines(done)
            encoded = json.dumps(done, separators=(",", ":")).encode()
        if len(encoded) > DONE_HEADER_BYTES:
            encoded = _fit(done)
        if parts and size + len(encoded) > DONE_HEADER_BYTES:
            frames.append(_done_frame(parts, bodies[first:i]))
            parts, size, first = [], 0, i
        parts.append(encoded)  # the item's JSON as written to the journal, not encoded again
        size += len(encoded) + 1
    if parts:
        frames.append(_done_frame(parts, bodies[first:]))
    return frames


def _done_frame(parts: list, bodies: list) -> bytes:
    header = b'{"k":"done","v":%d,"items":[%s]}' % (wire.PROTOCOL_VERSION, b",".join(parts))
    return wire.pack_raw(header, b"".join(bodies))


def _fit(done: dict) -> bytes:
    """``done`` as JSON under DONE_HEADER_BYTES: its newest handler lines that fit, then its
    newest INIT lines in what room is left; the rest counted in ``skipped`` (the journal, so
    the store, has every line)."""
    logs, init_logs = done.get("logs") or [], done.get("init_logs") or []
    for entry in init_logs:
        if len(entry[2]) > STREAMED_LINE_CHARS:
            entry[2] = entry[2][:STREAMED_LINE_CHARS] + LINE_CUT
    room = DONE_HEADER_BYTES - len(json.dumps(dict(done, logs=[], init_logs=[], skipped=10**9)))
    kept = {"logs": [], "init_logs": []}
    for key, lines in (("logs", logs), ("init_logs", init_logs)):
        for entry in reversed(lines):
            size = len(json.dumps(entry)) + 1
            if size > room:
                break
            kept[key].append(entry)
            room -= size
    dropped = len(logs) - len(kept["logs"])
    done["logs"] = kept["logs"][::-1]
    if "init_logs" in done:
        done["init_logs"] = kept["init_logs"][::-1]
    if dropped:
        done["skipped"] = done.get("skipped", 0) + dropped
    return json.dumps(done, separators=(",", ":")).encode()


def _needs_cap(item: dict) -> bool:
    logs = item["logs"]
    return len(logs) > DONE_LOG_LINES or any(len(entry[2]) > STREAMED_LINE_CHARS for entry in logs)


def _cap_lines(item: dict) -> None:
    """At most DONE_LOG_LINES handler lines (the newest) travel, each cut to a readable length."""
    logs = item["logs"]
    skipped = sum(1 for entry in logs if entry[1] != "platform") - DONE_LOG_LINES
    if skipped > 0:
        kept, drop = [], skipped
        for entry in logs:
            if drop and entry[1] != "platform":
                drop -= 1
                continue
            kept.append(entry)
        item["logs"], item["skipped"] = kept, skipped
    for entry in item["logs"]:
        if len(entry[2]) > STREAMED_LINE_CHARS:
            entry[2] = entry[2][:STREAMED_LINE_CHARS] + LINE_CUT


def _nbytes(descriptor) -> int:
    try:
        return buffers.nbytes(descriptor)
    except buffers.BufferFileError:
        return 0


def _exiting() -> bool:
    import sys
    exc = sys.exc_info()[1]
    return isinstance(exc, SystemExit)


def _none():
    return None


def serve(env, header: dict, fds: list[int]) -> str:
    """Serve the lease ``header`` announced (``fds``: its socket, stdout's and stderr's read ends)."""
    return Lease(env, header, fds).serve()
