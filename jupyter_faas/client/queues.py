"""Local queues from the client: ``faas.queue(name)`` and the :class:`Queue` it returns.

A queue is the server's (durable, SQS semantics); this object only names it.  A function
subscribes with ``handle.subscribe(q, ...)``; ``q`` is also a destination
(``on_failure=q``).
"""

from __future__ import annotations

import json


class Queue:
    """``q.send(body, attributes=None, delay=0)``, ``q.send_batch([...])``, ``len(q)``,
    ``q.dead_letter_queue``, ``q.redrive()`` (on a dead-letter queue), ``q.stats()``."""

    is_queue = True

    def __init__(self, row: dict, connection):
        self._row = row
        self._connection = connection

    @property
    def name(self) -> str:
        return self._row["name"]

    @property
    def arn(self) -> str:
        return self._row["arn"]

    def stats(self) -> dict:
        """``visible``, ``in_flight``, ``delayed``, ``messages`` (their sum), as the server counts now."""
        self._row = self._connection.request("GET", f"/faas/api/queues/{self.name}")
        return {k: self._row[k] for k in ("visible", "in_flight", "delayed", "messages")}

    def __len__(self) -> int:
        """Messages in the queue: not yet processed (visible, in flight or delayed)."""
        return self.stats()["messages"]

    def send(self, body, attributes: dict | None = None, delay: float = 0) -> str:
        """Send one message; returns its ``messageId``.  ``body``: a string (anything else is sent
        as its JSON); ``attributes``: ``{name: string or number}`` (SQS message attributes);
        ``delay``: seconds (0..900) before it can be received.  It is on disk when this returns."""
        return self.send_batch([body], attributes=attributes, delay=delay)[0]

    def send_batch(self, bodies, attributes: dict | None = None, delay: float = 0) -> list[str]:
        """Send many messages in one request and one transaction; their ``messageId`` s."""
        messages = [{"body": b if isinstance(b, str) else json.dumps(b), "attributes": attributes,
                     "delay": delay} for b in bodies]
        ids = []
        for i in range(0, len(messages), 10_000):
            ids += self._connection.request("POST", f"/faas/api/queues/{self.name}/messages",
                                            {"messages": messages[i:i + 10_000]})["message_ids"]
        return ids

    def peek(self, limit: int = 100) -> list[dict]:
        """The oldest messages still in the queue (without receiving them)."""
        return self._connection.request("GET", f"/faas/api/queues/{self.name}/messages",
                                        params={"limit": limit})["messages"]

    @property
    def dead_letter_queue(self) -> "Queue | None":
        """Where a message received ``max_receive_count`` times goes (``<name>-dlq``)."""
        dlq = self._row.get("dead_letter_queue")
        if not dlq:
            return None
        return Queue(self._connection.request("GET", f"/faas/api/queues/{dlq}"), self._connection)

    def redrive(self) -> int:
        """On a dead-letter queue: move every message back to its source queue; how many moved."""
        return self._connection.request("POST", f"/faas/api/queues/{self.name}/redrive", {})["moved"]

    def __repr__(self) -> str:
        return f"<Queue {self.name} messages={self._row.get('messages', '?')}>"


def queue(name: str, visibility_timeout: float | None = None, connection=None) -> Queue:
    """The local queue ``name``, made if it does not exist (with its dead-letter queue
    ``<name>-dlq``).  ``visibility_timeout``: seconds a received message stays invisible
    (default: 6 × the subscribed function's timeout, as Lambda advises)."""
    from .discovery import default_connection
    conn = connection or default_connection()
    return Queue(conn.request("POST", "/faas/api/queues", {"name": name,
                                                           "visibility_timeout": visibility_timeout}), conn)


def queues(connection=None) -> list[Queue]:
    from .discovery import default_connection
    conn = connection or default_connection()
    return [Queue(r, conn) for r in conn.request("GET", "/faas/api/queues")["queues"]]
