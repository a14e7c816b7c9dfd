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
   ``result_file`` as when the server sends the invocations)
  environment -> client  ``done`` {items: [...]}, body: the results, concatenated; each item is
                         the invocation session's done item (request_id, status, error,
                         report, function, version, nbytes, buffers?, logs, skipped?)
                         ``ended`` {request_ids}: ended in a way only the server may judge
                         (timed out, over its memory, MemoryError): ask it (``watch``)
                         ``not_started`` {request_ids}: never started (cancelled before, or
                         the lease ended first), so never recorded: send them again

Records: wire frames appended to the lease's journal (a file the server made; one ``write``
each, durable against this process's death and the server's as SQLite's WAL at
synchronous=NORMAL is):

  ``start`` {request_id, t, summary, encoding, function, version, lambda_version, memory_mb,
            buffers?}   written before the handler runs: the invocation is accepted
  ``end``   {request_id, t, clean, ...}  body: the result, or the pickled exception; written
            before the client is told.  ``clean``: the done item the client got (status,
            error, report, logs); else the raw figures for the server to judge (outcome,
            duration_ms, peak_mb, oom, errorType, ...)

Output: while leased, the server does not read this process's pipes; this process drains them
itself at the end of each invocation, so each line lands in the invocation that printed it.
A long invocation's lines are read by the server meanwhile.  Both read only while holding an
exclusive ``flock`` on the journal, and the start record is written under it too: every line is
read once, by one of them, and attributed to the invocation that was running.

The deadline, the memory limit and cancelling a running invocation stay the server's: it reads
the journal (``start`` says what runs since when) and kills this process, as for any other.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections import deque

from . import buffers, journal, reports, wire

#: results wait at most this long for company before they are sent (a map's stream of ends)
DONE_EVERY_S = 0.002
DONE_BATCH_ITEMS = 256
DONE_BATCH_BYTES = 8 << 20
#: handler lines a done item carries (the newest); the journal, so the store, keeps every one
DONE_LOG_LINES = 500
STREAMED_LINE_CHARS = 300
MAX_LINE = 256 * 1024


class Meter:
    """This process's Max Memory Used per invocation: its peak RSS (reset through
    ``/proc/self/clear_refs``) and, under a cgroup, the cgroup's peak and OOM-kill count."""

    def __init__(self, cgroup: str | None, own_only: bool):
        self.own_only = own_only  # forked from a snapshot: only the cgroup's figure counts
        self.clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
        self.usage = self.oom = None
        if cgroup:
            self.usage = os.open(os.path.join(cgroup, "memory.max_usage_in_bytes"), os.O_RDWR)
            self.oom = os.open(os.path.join(cgroup, "memory.oom_control"), os.O_RDONLY)
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
        import resource
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        usage = None
        if self.usage is not None:
            try:
                usage = int(os.pread(self.usage, 64, 0)) / (1 << 20)
            except (OSError, ValueError):
                pass
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
        self.version = header["version"]            # the engine's version (what done items name)
        self.lambda_version = header["lambda_version"]
        self.memory_mb = header["memory_mb"]
        self.timeout_ms = header["timeout_s"] * 1000
        self.pricing = (header["per_gb_second"], header["per_request"])
        self.init_type = header.get("init_type", "on-demand")
        self.max_payload = header.get("max_payload_bytes") or float("inf")
        self.max_buffers = header.get("max_buffer_bytes") or float("inf")
        self.cgroup = header.get("cgroup")
        self.meter = Meter(self.cgroup, bool(header.get("own_only")))
        self.pending: deque = deque()  # [request_id, encoding, summary, buffers, payload]
        self.items: list = []          # done items not sent yet, and their bodies
        self.bodies: list = []
        self.unsent_bytes = 0
        self.first_unsent = 0.0
        self.open = True               # the client's end may still be read and written

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
                if self.items and time.monotonic() - self.first_unsent >= DONE_EVERY_S:
                    self._send_done()  # what ended waited long enough for company
                if self.pending:
                    self._run(self.pending.popleft())
        finally:
            sel.close()
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

    def _run(self, item) -> None:
        rid, encoding, summary, described, payload = item
        started_wall = time.time()
        started_mono = time.monotonic()
        self.meter.reset()
        start = {"request_id": rid, "t": started_wall, "summary": summary, "encoding": encoding,
                 "function": self.function, "version": self.version,
                 "lambda_version": self.lambda_version, "memory_mb": self.memory_mb}
        if described is not None:
            start["buffers"] = described
        with self._output_lock():
            os.write(self.journal, wire.pack("start", **start))
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
        with self._output_lock():
            lines = self._drain(ended_wall)
            if clean:
                done = self._done_item(rid, kind, fields, round(peak), started_wall, ended_wall, lines)
                os.write(self.journal, wire.pack("end", body, **done, t=ended_wall, clean=True))
            else:
                raw = {k: v for k, v in fields.items() if k not in ("request_id", "encoding")}
                os.write(self.journal, wire.pack(
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
            return
        if described is not None:
            # its argument's file is spent: the server folds now and reuses the file's pages
            self.env.channel.send("buffers_spent", request_id=rid)
        self.items.append(done)
        self.bodies.append(body)
        if len(self.items) == 1:
            # the batch's age counts from its first item's start: a long item's result goes out
            # before the next item runs, quick ones share a frame for up to DONE_EVERY_S of work
            self.first_unsent = started_mono
        self.unsent_bytes += len(body)
        if len(self.items) >= DONE_BATCH_ITEMS or self.unsent_bytes >= DONE_BATCH_BYTES:
            self._send_done()

    def _done_item(self, rid, kind, fields, peak_mb, started_wall, ended_wall, lines) -> dict:
        rep = reports.report(fields["duration_ms"], self.memory_mb, peak_mb, None, *self.pricing)
        rep["init_type"] = self.init_type
        error = None
        if kind == "result":
            status = "succeeded"
        else:
            status = reports.FAILED
            error = {k: fields.get(k) for k in ("errorType", "errorMessage", "errorModule",
                                                "stackTrace", "stage")}
        logs = [[started_wall, "platform", reports.start_line(rid, self.lambda_version)]]
        logs.extend(lines)
        if error is not None:
            logs.append([ended_wall, "platform", reports.error_line(error)])
        logs.append([ended_wall, "platform", reports.end_line(rid)])
        logs.append([ended_wall, "platform",
                     reports.report_line(rid, rep, status, error and error["errorType"])])
        done = {"request_id": rid, "status": status, "error": error, "report": rep,
                "function": self.function, "version": self.version, "logs": logs}
        if "buffers" in fields:
            done["buffers"] = fields["buffers"]
        if "imported" in fields:
            done["imported"] = fields["imported"]
        return done

    # ---- output ----------------------------------------------------------------------------

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
        for item, body in zip(items, bodies):
            item["nbytes"] = len(body)
            _cap_lines(item)
            item.pop("imported", None)
        self._send("done", b"".join(bodies), items=items)

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
            entry[2] = entry[2][:STREAMED_LINE_CHARS] + " …[line cut; the store has it all]"


def _nbytes(descriptor) -> int:
    try:
        return buffers.nbytes(descriptor)
    except buffers.BufferFileError:
        return 0


def _none():
    return None


def serve(env, header: dict, fds: list[int]) -> str:
    """Serve the lease ``header`` announced (``fds``: its socket, stdout's and stderr's read ends)."""
    return Lease(env, header, fds).serve()
