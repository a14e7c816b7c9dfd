"""The server's invocation frames applied to the futures they name: one dispatcher, every carrier.

Both carriers read the same frames (their format is drawn in
:mod:`jupyter_faas.server.protocol.session`): the websocket, on the client's IO thread
(:mod:`.connection`), and the direct Unix socket, on the thread that waits for a sync call
(:mod:`.direct`).  Each carrier parses frames and hands ``(header, body)`` to its
:class:`Dispatcher`, which alone knows what a frame means for a future:

  ``accepted`` {version, items: [[cid, request_id], ...]}  a sent call has its request id
  ``rejected`` {cids, error}                               sent calls the server refused
  ``log``      {logs: {request_id: lines}, skipped}        live lines of followed calls
  ``done``     {items: [{request_id, status, ..., nbytes}]}  ends, results in the body
  ``unknown``  {request_ids}                               a watch the store cannot answer

A future cancelled after it was sent but before the server named it is cancelled the
moment the ``accepted`` arrives, through the carrier's ``cancel`` (the server can only
cancel by request id).  Parsing frames is not done here (:mod:`kernel_workers.wire`).
"""

from __future__ import annotations

from .. import errors


class Dispatcher:
    """The futures one carrier is waiting on, and what each server frame does to them.

    ``cancel(request_ids)`` asks the server, over the same carrier, to cancel invocations;
    it is called (on the reading thread) for futures whose ``cancel()`` came before their
    acceptance.
    """

    def __init__(self, cancel=None):
        self.awaiting: dict[int, object] = {}    # sent, not accepted yet: by client id
        self.following: dict[str, object] = {}   # accepted, not ended yet: by request id
        self._cancel = cancel

    def expect(self, cid: int, fut) -> None:
        """``fut`` was sent as client id ``cid``."""
        self.awaiting[cid] = fut

    def follow(self, request_id: str, fut) -> None:
        """``fut`` is told of the logs and end of ``request_id`` (a watch)."""
        self.following[request_id] = fut

    def dispatch(self, header: dict, body) -> None:
        """Apply one frame; an unknown kind is ignored (a newer server may send more)."""
        handler = _HANDLERS.get(header["k"])
        if handler is not None:
            handler(self, header, body)

    def accepted(self, items, version) -> None:
        """``items`` ``[[cid, request_id], ...]`` were accepted as ``version``."""
        cancel = []
        for cid, rid in items:
            fut = self.awaiting.pop(cid, None)
            if fut is not None:
                self.following[rid] = fut
                fut._accepted(rid, version)
                if fut._cancel_requested:
                    cancel.append(rid)
        if cancel and self._cancel is not None:
            self._cancel(cancel)

    def _on_accepted(self, header: dict, body) -> None:
        self.accepted(header["items"], header["version"])

    def _on_rejected(self, header: dict, body) -> None:
        err = header["error"]
        cls = errors.class_for(err["errorType"])
        for cid in header.get("cids") or []:
            fut = self.awaiting.pop(cid, None)
            if fut is not None:
                fut._fail(cls(err["errorMessage"]))

    def _on_log(self, header: dict, body) -> None:
        skipped = dict(header.get("skipped") or {})
        for rid, lines in header["logs"].items():
            fut = self.following.get(rid)
            if fut is not None:
                fut._log_lines(lines, skipped.pop(rid, 0))
        for rid, n in skipped.items():
            fut = self.following.get(rid)
            if fut is not None:
                fut._log_lines([], n)

    def _on_done(self, header: dict, body) -> None:
        offset = 0
        for item in header["items"]:
            n = item["nbytes"]
            fut = self.following.pop(item["request_id"], None)
            if fut is not None:
                # a leased invocation that reported its environment's cold start: INIT's lines first
                lines = (item.get("init_logs") or []) + (item.get("logs") or [])
                if lines or item.get("skipped"):
                    fut._log_lines(lines, item.get("skipped", 0))
                chunk = body[offset:offset + n]
                # An item with buffers is unpickled from views of the frame (no copy).
                fut._done(item, chunk if item.get("buffers") else bytes(chunk))
            offset += n

    def _on_unknown(self, header: dict, body) -> None:
        for rid in header["request_ids"]:
            fut = self.following.pop(rid, None)
            resend = getattr(fut, "_if_unknown", None)
            if resend is not None:
                # sent to a leased environment that never started it: never accepted, send again
                fut._if_unknown = None
                resend()
                continue
            if fut is not None:
                fut._fail(errors.ResourceNotFound(
                    f"the server has no invocation {rid!r} (or it was accepted by a server "
                    f"that stopped before recording its end; list them with faas.invocations())"))


_HANDLERS = {"accepted": Dispatcher._on_accepted, "rejected": Dispatcher._on_rejected,
             "log": Dispatcher._on_log, "done": Dispatcher._on_done, "unknown": Dispatcher._on_unknown}
