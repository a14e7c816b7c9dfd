"""The client's invocation session: batched submissions in; accepts, live log lines and results out.

Carrier-neutral (no tornado here): the websocket carrier (:mod:`..api.invocations_ws`) and the
direct Unix socket (:mod:`.direct`) both speak it.

Messages are :mod:`kernel_workers.wire` frames in binary websocket messages.  Every
kind carries a list, so a ``map`` of 10,000 items is a handful of frames each way,
not 10,000 requests.

client -> server
  ``invoke``  {function, version?, encoding, queue, logs, group?, items: [[cid, nbytes, buffers?], ...]}
              body: the payloads, concatenated in item order; ``buffers`` (optional) describes
              a file of the server's buffer directory holding the payload's out-of-band
              buffers, ``{file, spans}`` (see :mod:`kernel_workers.buffers`); ``group``:
              ``[id, limit]``, at most ``limit`` invocations of the group run at once
              (``map(concurrency=)``), for every frame that names it
              ``version``: an engine version (int), or a Lambda qualifier (str: ``$LATEST``,
              ``"3"``, an alias; resolved per invocation, see engine/versions.py)
  ``cancel``  {request_ids: [...]}
  ``watch``   {request_ids: [...], logs}   re-attach: the stored log lines so far, then live
              lines and ``done``; an invocation that already ended gets its ``done`` at once
server -> client
  ``accepted`` {version, items: [[cid, request_id], ...]}
  ``rejected`` {cids: [...], error: {errorType, errorMessage}}
  ``log``      {logs: {request_id: [[ts, stream, line], ...]}, skipped: {request_id: n}}
  ``done``     {items: [{request_id, status, error, report, function, version, nbytes,
                        buffers?, logs?, skipped?}]}  body: the results, concatenated in item
              order; ``logs`` are the invocation's last lines when few (one message per quick
              call).  ``buffers``: the result pickle's out-of-band buffers, either
              ``{file, spans}`` (a socket opened with ``?buffers=<the server's nonce>``: the
              client maps the file) or ``{lengths}`` (the buffers follow the pickle in the
              item's bytes), or ``{error}`` when they could not be read
  ``unknown``  {request_ids: [...]}  (watch of a request id the store does not have)

Back-pressure: log lines are capped per socket (``LOG_LINES_PER_FLUSH`` every
``FLUSH_S``); the rest are counted in ``skipped`` (platform lines — START, END,
REPORT — are never skipped).  Over the cap an invocation's *newest* lines are kept (its
oldest pending ones give way), so a flood's last lines always reach the client.  The store keeps every line either way.  Results are
never dropped.  A ``done`` carries its invocation's own pending lines (START..REPORT of a
quick call: one message per call, not two); other invocations' lines wait for the timed
log flush.  A lone result goes out on the next loop turn; while other invocations of
the socket are in flight (a ``map``), results are gathered for up to ``DONE_COALESCE_S``
so a stream of finishes shares frames instead of costing a frame (and a client wake-up)
each.

Invocations outlive the socket: a client that goes away does not cancel what it
started (it can re-attach with ``watch``); only ``cancel`` does.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging

from kernel_workers import buffers, wire

from ...errors import FaaSError
from ...vocabulary import TERMINAL

log = logging.getLogger("jupyter_faas.server")

FLUSH_S = 0.05
#: at most this many handler lines per socket per flush (10,000 lines/s): a kernel that
#: shows them must stay responsive however fast a function prints.
LOG_LINES_PER_FLUSH = 500
#: ``done`` items and bytes per frame (a frame's JSON header must stay well under 1 MB)
DONE_BATCH_ITEMS = 500
DONE_BATCH_BYTES = 8 << 20
#: a ``done`` frame's header at most (half the reader's cap, wire.MAX_HEADER_BYTES), counting
#: PLAIN_DONE_BYTES for an item with neither error nor lines
DONE_HEADER_BYTES = 512 * 1024
PLAIN_DONE_BYTES = 512
#: while more of the socket's invocations are in flight, results wait at most this long
#: for company (a map item's own cycle is ~1 ms; a lone call never waits)
DONE_COALESCE_S = 0.002
#: log lines per ``log`` frame (START/END/REPORT of a big map are not rate-capped)
LOG_FRAME_LINES = 2000
#: a streamed line is cut to this many characters (the store keeps it whole), so a frame's
#: JSON header stays far below the wire's 1 MB header limit
STREAMED_LINE_CHARS = 300


class InvocationSession(abc.ABC):
    """One client's invocation protocol (the frames above), whatever carries the frames.

    Spoken over the websocket (:mod:`jupyter_faas.server.api.invocations_ws`) and over the
    local direct socket (:mod:`jupyter_faas.server.protocol.direct`); a carrier implements :meth:`send`
    and calls :meth:`open` once, then :meth:`on_message` per frame and :meth:`on_close`.
    """

    service = None

    @abc.abstractmethod
    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        """Write one frame to the client (each carrier its own way)."""

    def open(self):
        self.closed = False
        self.pending_logs: dict[str, list] = {}
        self.skipped: dict[str, int] = {}
        self.budget = LOG_LINES_PER_FLUSH
        self._log_flush = None
        self.pending_done: list = []
        self._done_flush = None
        self.in_flight = 0  # invocations of this socket accepted (or watched) and not yet done
        self.maps_files = False  # the client maps result buffers from their files (see shares_files)

    def shares_files(self, nonce: str | None) -> None:
        """The client proved it shares the buffer directory: results' buffers stay in their files."""
        files = self.service.files
        self.maps_files = files is not None and nonce is not None and nonce == files.nonce

    def on_close(self):
        self.closed = True

    def on_message(self, message):
        if isinstance(message, str):
            self.send("rejected", cids=[], error={"errorType": "InvalidRequest",
                                                  "errorMessage": "send binary wire frames"})
            return
        try:
            header, body = wire.unpack(message)
        except wire.ProtocolError as exc:
            self.send("rejected", cids=[], error={"errorType": "ProtocolError", "errorMessage": str(exc)})
            return
        self.on_frame(header, body)

    def on_frame(self, header: dict, body) -> None:
        kind = header["k"]
        if kind == "invoke":
            self._invoke(header, body)
        elif kind == "cancel":
            for rid in header.get("request_ids", []):
                self.service.cancel(rid)
        elif kind == "watch":
            self._watch(header.get("request_ids", []), bool(header.get("logs", True)))
        else:
            self.send("rejected", cids=[], error={"errorType": "ProtocolError",
                                                  "errorMessage": f"unknown frame kind {kind!r}"})

    # ---- submissions ----------------------------------------------------------------------

    def _invoke(self, header: dict, body: memoryview) -> None:
        items = header.get("items") or []
        cids = [item[0] for item in items]
        if sum(item[1] for item in items) != len(body):
            self.send("rejected", cids=cids, error={
                "errorType": "ProtocolError",
                "errorMessage": f"the items' sizes add up to {sum(item[1] for item in items)} bytes but "
                                f"the frame carries {len(body)}"})
            return
        listener = self._on_log if header.get("logs") else None
        calls, offset = [], 0
        for _, n, *described in items:
            calls.append({"name": header.get("function"), "payload": bytes(body[offset:offset + n]),
                          "encoding": header.get("encoding", "pickle"), "version": header.get("version"),
                          "queue": bool(header.get("queue")), "listener": listener,
                          "group": header.get("group"),
                          "buffers": described[0] if described else None,
                          **({"init_failure": header["init_failure"]} if header.get("init_failure") else {})})
            offset += n
        # One store transaction for the whole batch; an item rejected on its own (too large)
        # does not take the rest with it.
        if len(calls) == 1:
            # A single call takes submit()'s fast path: straight into a warm environment.
            call = calls[0]
            try:
                results = [self.service.submit(call.pop("name"), call.pop("payload"), **call)]
            except FaaSError as exc:
                results = [exc]
        else:
            results = self.service.submit_many(calls)
        accepted, version = [], None
        for (cid, *_), inv in zip(items, results):
            if isinstance(inv, FaaSError):
                self.send("rejected", cids=[cid], error={"errorType": inv.error_type,
                                                         "errorMessage": inv.message})
                continue
            version = inv.function["version"]
            accepted.append([cid, inv.request_id])
            self.in_flight += 1
            inv.done.add_done_callback(self._on_done)
        if accepted:
            self.send("accepted", version=version, items=accepted)

    # ---- re-attach ------------------------------------------------------------------------

    def _watch(self, request_ids: list, logs: bool) -> None:
        unknown = []
        self.service.settle_leased(request_ids)  # run under a lease: in ``active`` or stored now
        for rid in request_ids:
            inv = self.service.active.get(rid)
            if inv is not None:
                if logs:
                    for entry in self.service.watch(rid, self._on_log):
                        self._on_log(rid, entry)
                self.in_flight += 1
                inv.done.add_done_callback(self._on_done)
                continue
            inv = self.service.ending.get(rid)
            if inv is not None:
                # Ended, its terminal row not committed yet: its done comes with the commit.
                self.in_flight += 1
                inv.done.add_done_callback(self._on_done)
                continue
            row = self.service.stored_invocation(rid)
            if row is None:
                unknown.append(rid)
                continue
            if row["status"] not in TERMINAL:
                # Accepted by a server that died; recover() settles these at start.
                unknown.append(rid)
                continue
            result = self.service.stored_result(rid)  # a failure's is the pickled exception
            done = {"request_id": rid, "status": row["status"], "error": row["error"],
                    "report": self.service.stored_report(row), "function": row["function"],
                    "version": row["version"]}
            descriptor = self.service.stored_result_buffers(rid)
            if descriptor is not None:
                done["buffers"] = descriptor
            self._queue_done(done, result, coalesce=True)
        if unknown:
            self.send("unknown", request_ids=unknown)

    # ---- log lines ------------------------------------------------------------------------

    def _on_log(self, request_id: str, entry: tuple) -> None:
        if entry[1] != "platform":
            if self.budget <= 0:
                # Over the cap, the newest lines are the ones to send (a flood's last lines
                # are where it ended): this invocation's oldest pending line gives way.
                if not self._drop_oldest_pending(request_id):
                    self.skipped[request_id] = self.skipped.get(request_id, 0) + 1
                    self._schedule_log_flush()
                    return
            else:
                self.budget -= 1
        if len(entry[2]) > STREAMED_LINE_CHARS:
            entry = (entry[0], entry[1], entry[2][:STREAMED_LINE_CHARS] + " …[line cut; the store has it all]")
        self.pending_logs.setdefault(request_id, []).append(entry)
        self._schedule_log_flush()

    def _drop_oldest_pending(self, request_id: str) -> bool:
        """Drop (and count as skipped) the invocation's oldest pending handler line, if any."""
        pending = self.pending_logs.get(request_id, ())
        for i, (_, stream, _) in enumerate(pending):
            if stream != "platform":
                del pending[i]
                self.skipped[request_id] = self.skipped.get(request_id, 0) + 1
                return True
        return False

    def _schedule_log_flush(self) -> None:
        if self._log_flush is None:
            self._log_flush = asyncio.get_running_loop().call_later(FLUSH_S, self._flush_logs)

    def _flush_logs(self) -> None:
        if self._log_flush is not None:
            self._log_flush.cancel()
        self._log_flush = None
        self.budget = LOG_LINES_PER_FLUSH
        pending, self.pending_logs = self.pending_logs, {}
        skipped, self.skipped = self.skipped, {}
        frame, size = {}, 0
        for rid, lines in pending.items():
            if frame and size + len(lines) > LOG_FRAME_LINES:
                self.send("log", logs=frame, skipped={})
                frame, size = {}, 0
            frame[rid] = lines
            size += len(lines)
        if frame or skipped:
            self.send("log", logs=frame, skipped=skipped)

    # ---- results --------------------------------------------------------------------------

    def _on_done(self, fut: asyncio.Future) -> None:
        self.in_flight -= 1
        done, result = fut.result()
        self._queue_done(done, result)

    def _queue_done(self, done: dict, result: bytes | None, coalesce: bool = False) -> None:
        """Queue a ``done`` item; ``coalesce``: more are coming in this turn (a watch of many)."""
        parts = [result or b""]
        descriptor = done.get("buffers")
        if descriptor is not None and not self.maps_files:
            # A client that cannot map the file gets the buffers after the pickle.
            try:
                views = self.service.files.views(descriptor)
            except (buffers.BufferFileError, AttributeError) as exc:
                done = dict(done, buffers={"error": f"the result's buffers could not be read on "
                                                    f"the server: {exc}"})
            else:
                size = len(parts[0]) + sum(v.nbytes for v in views)
                limit = self.service.max_payload_bytes
                if size > limit:
                    # Inside a message, Lambda's limit holds (the client's websocket caps
                    # messages too); the result stays in the store, readable over REST.
                    done = dict(done, buffers={"error": (
                        f"the result is {size} bytes with its arrays, over the {limit} bytes "
                        f"(max_payload_mb) a client that does not share the server's machine gets "
                        f"in a message. Read it on the server's machine (faas.Invocation.from_id"
                        f"(request_id).result), or GET /faas/api/invocations/<request_id>/result")})
                else:
                    done = dict(done, buffers={"lengths": [v.nbytes for v in views]})
                    parts.extend(views)
        self.pending_done.append((done, parts))
        if len(self.pending_done) >= DONE_BATCH_ITEMS:
            self._flush_done()
        elif self.in_flight == 0 and not coalesce:
            # The last one in flight has ended: nothing more to wait for, so no turn of the
            # loop either (a lone sync call's answer goes out now).
            self._flush_done()
        elif self._done_flush is None:
            loop = asyncio.get_running_loop()
            self._done_flush = (loop.call_soon(self._flush_done) if self.in_flight == 0
                                else loop.call_later(DONE_COALESCE_S, self._flush_done))

    def _flush_done(self) -> None:
        if self._done_flush is not None:
            self._done_flush.cancel()
            self._done_flush = None
        pending, self.pending_done = self.pending_done, []
        if not pending:
            return
        # An invocation's pending lines ride in its own ``done`` item when few; a chatty
        # one's go first in a ``log`` frame of their own.  Other invocations' lines are
        # left for the timed log flush.
        tails, chatty = {}, {}
        for done, _ in pending:
            rid = done["request_id"]
            lines = self.pending_logs.pop(rid, None)
            if lines is None:
                continue
            if len(lines) <= 50:
                tails[rid] = lines
            else:
                chatty[rid] = lines
        if chatty:
            skipped = {rid: self.skipped.pop(rid) for rid in chatty if rid in self.skipped}
            self.send("log", logs=chatty, skipped=skipped)
        items, bodies, size, header = [], [], 0, 0
        for done, parts in pending:
            nbytes = sum(len(p) for p in parts)
            rid = done["request_id"]
            item = dict(done, nbytes=nbytes)
            lines = tails.get(rid)
            if lines:
                item["logs"] = lines
            skipped = self.skipped.pop(rid, 0)
            if skipped:
                item["skipped"] = skipped
            # a plain success is a few hundred bytes of header; an error (up to 128 K characters)
            # or lines are measured: 500 failed items with tracebacks once passed the 1 MB cap
            weight = len(json.dumps(item)) if item.get("error") or lines else PLAIN_DONE_BYTES
            if items and (size + nbytes > DONE_BATCH_BYTES or len(items) >= DONE_BATCH_ITEMS
                          or header + weight > DONE_HEADER_BYTES):
                self.send("done", b"".join(bodies), items=items)
                items, bodies, size, header = [], [], 0, 0
            items.append(item)
            bodies.extend(parts)
            size += nbytes
            header += weight
        if items:
            self.send("done", b"".join(bodies), items=items)
