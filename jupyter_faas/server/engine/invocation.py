"""An accepted invocation while the engine holds it in memory (queued or running).

Its ``status`` can only make the moves the lifecycle allows
(:func:`jupyter_faas.server.model.check_move`): assigning any other raises
:class:`~jupyter_faas.server.model.IllegalTransition`, so no code path can put an
invocation where the store and the clients would disagree about it.
"""

from __future__ import annotations

import asyncio

from ...errors import InvalidParameter
from ..model import QUEUED, check_move


class Invocation:
    __slots__ = ("request_id", "function", "payload", "buffers", "encoding", "invocation_type", "_status",
                 "queue", "done", "task", "env", "logs", "unflushed", "listeners",
                 "created_at", "cancel_requested", "group", "throttle_timer", "triggered_by", "attempts",
                 "lease", "deadline")

    def __init__(self, request_id: str, function: dict, payload: bytes, encoding: str,
                 invocation_type: str, queue: bool, created_at: float, buffers: dict | None = None):
        self.request_id = request_id
        self.function = function
        self.payload = payload
        self.buffers = buffers  # the descriptor of the argument buffers' file, or None
        self.group = None  # (group id, limit): at most ``limit`` of its group run at once
        self.encoding = encoding            # 'pickle' | 'json'
        self.invocation_type = invocation_type
        self._status = QUEUED
        self.queue = queue                  # waits for a slot as long as it takes (else throttled)
        self.throttle_timer = None
        self.done = asyncio.get_running_loop().create_future()  # (done item, result bytes)
        self.task = None
        self.env = None
        self.logs: list = []        # the last lines of this invocation, for the tail in errors
        self.unflushed: list = []   # lines not yet in the store
        self.listeners: list = []   # callables(request_id, entry) for live logs
        self.created_at = created_at
        self.cancel_requested = False
        self.triggered_by = None    # what made it (the feed tells the panel); None: a direct call
        self.attempts = None        # an Event invocation's attempts started so far
        self.lease = None           # the engine's lease it ran under (engine/leases.py), if any
        self.deadline = None        # a leased one's deadline timer

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, new: str) -> None:
        check_move(self._status, new)
        self._status = new


def check_group(group) -> tuple:
    """``[id, limit]`` from the wire, checked: a map's concurrency cap."""
    try:
        gid, limit = group
    except (TypeError, ValueError):
        raise InvalidParameter(f"group {group!r} is not [id, limit]") from None
    if not isinstance(gid, str) or not gid or len(gid) > 100:
        raise InvalidParameter("a group id is a non-empty string of at most 100 characters")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidParameter(f"group limit {limit!r} is not a whole number >= 1")
    return gid, limit
