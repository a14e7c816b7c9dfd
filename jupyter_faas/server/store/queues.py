"""Local queues (SQS semantics): queues, their messages, receive with a visibility timeout,
delete, dead-letter moves and redrive.  Each method is one transaction."""

from __future__ import annotations

import json

from ...vocabulary import QUEUED

_QUEUE_COLUMNS = ("name", "created_at", "visibility_timeout", "dead_letter_queue", "redrive_to")
_MESSAGE_COLUMNS = ("seq", "id", "queue", "body", "message_attributes", "md5", "sent_at", "visible_at",
                    "receive_count", "first_received_at", "receipt_handle", "request_id")


def _message(row) -> dict:
    m = dict(zip(_MESSAGE_COLUMNS, tuple(row)))
    m["message_attributes"] = json.loads(m["message_attributes"]) if m["message_attributes"] else {}
    return m


class QueuesTable:
    def add_queue(self, name: str, now: float, visibility_timeout: float | None,
                  dead_letter_queue: str | None) -> None:
        """The queue and its dead-letter queue (if not there yet)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO queues(name, created_at, visibility_timeout, dead_letter_queue, "
                       "redrive_to) VALUES (?, ?, ?, ?, NULL)", (name, now, visibility_timeout, dead_letter_queue))
            if visibility_timeout is not None:
                db.execute("UPDATE queues SET visibility_timeout=? WHERE name=?", (visibility_timeout, name))
            if dead_letter_queue:
                db.execute("INSERT OR IGNORE INTO queues(name, created_at, visibility_timeout, "
                           "dead_letter_queue, redrive_to) VALUES (?, ?, NULL, NULL, ?)",
                           (dead_letter_queue, now, name))

    def get_queue(self, name: str) -> dict | None:
        row = self.db.execute(f"SELECT {', '.join(_QUEUE_COLUMNS)} FROM queues WHERE name=?", (name,)).fetchone()
        return dict(zip(_QUEUE_COLUMNS, tuple(row))) if row else None

    def queues(self) -> list[dict]:
        rows = self.db.execute(f"SELECT {', '.join(_QUEUE_COLUMNS)} FROM queues ORDER BY name").fetchall()
        return [dict(zip(_QUEUE_COLUMNS, tuple(r))) for r in rows]

    def queue_counts(self, name: str, now: float) -> dict:
        """``visible`` (ready to receive), ``in_flight`` (received, not deleted, invisible) and
        ``delayed`` (sent with a delay, never received yet)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ? AND receive_count > 0), 0), "
            "COALESCE(SUM(visible_at > ? AND receive_count = 0), 0) FROM queue_messages WHERE queue=?",
            (now, now, now, name)).fetchone()
        return {"visible": row[0], "in_flight": row[1], "delayed": row[2]}

    def next_visible_at(self, name: str, now: float) -> float | None:
        row = self.db.execute("SELECT MIN(visible_at) FROM queue_messages WHERE queue=? AND visible_at > ?",
                              (name, now)).fetchone()
        return row[0]

    def send_messages(self, name: str, messages: list[dict]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO queue_messages(id, queue, body, message_attributes, md5, sent_at, visible_at, "
                "receive_count) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                [(m["id"], name, m["body"], json.dumps(m["message_attributes"]) if m["message_attributes"]
                  else None, m["md5"], m["sent_at"], m["visible_at"]) for m in messages])

    def receive_messages(self, name: str, limit: int, now: float, visible_at: float, max_receive_count: int,
                         dead_letter_queue: str | None, handles, trigger_id: str | None = None) -> tuple:
        """Up to ``limit`` visible messages, oldest first, made invisible until ``visible_at``, their
        receive count up by one and a new receipt handle each (``handles()``).  One received
        ``max_receive_count`` times already goes to ``dead_letter_queue`` instead.  Returns
        ``(received, moved to the dead-letter queue)``."""
        with self._tx() as db:
            rows = db.execute(f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM queue_messages WHERE queue=? AND "
                              f"visible_at <= ? ORDER BY visible_at, seq LIMIT ?", (name, now, limit)).fetchall()
            got, dead = [], []
            for row in rows:
                m = _message(row)
                if m["receive_count"] >= max_receive_count and dead_letter_queue:
                    dead.append(m["id"])
                    continue
                m["receive_count"] += 1
                m["first_received_at"] = m["first_received_at"] or now
                m["receipt_handle"] = handles()
                m["visible_at"] = visible_at
                got.append(m)
            if dead:
                db.executemany("UPDATE queue_messages SET queue=?, visible_at=?, receive_count=0, "
                               "receipt_handle=NULL, request_id=NULL WHERE id=?",
                               [(dead_letter_queue, now, i) for i in dead])
            db.executemany("UPDATE queue_messages SET visible_at=?, receive_count=?, first_received_at=?, "
                           "receipt_handle=?, request_id=NULL WHERE id=?",
                           [(m["visible_at"], m["receive_count"], m["first_received_at"], m["receipt_handle"],
                             m["id"]) for m in got])
            if got and trigger_id is not None:
                db.execute("UPDATE triggers SET last_fired_at=?, fired=fired+? WHERE id=?",
                           (now, len(got), trigger_id))
        return got, dead

    def add_batch_invocation(self, inv: dict, payload: bytes, received: list[tuple]) -> None:
        """A queue poller's invocation (as :meth:`add_invocation`, ``triggered_by='queue'``) and the
        ``(id, receipt handle)`` messages it carries, claimed by its request id, in one
        transaction: a restart finds which invocation had them, and settles them from its end."""
        with self._tx() as db:
            queued = inv["status"] == QUEUED
            db.execute(
                "INSERT INTO invocations(request_id, function, version, invocation_type, encoding, "
                "status, payload, created_at, memory_size_mb, started_at, environment_id, input_summary, "
                "triggered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queue')",
                (inv["request_id"], inv["function"], inv["version"], inv["invocation_type"], inv["encoding"],
                 inv["status"], payload if queued else None, inv["created_at"], inv["memory_size_mb"],
                 inv.get("started_at"), inv.get("environment_id"), inv.get("input_summary")))
            db.executemany("UPDATE queue_messages SET request_id=? WHERE id=? AND receipt_handle=?",
                           [(inv["request_id"], i, h) for i, h in received])

    def settle_messages(self, request_id: str, delete: list[str], visible_at: float | None = None) -> None:
        """The end of the invocation that got them: ``delete`` (ids) are processed; the others it
        got stay until their visibility timeout (or ``visible_at``, if given)."""
        with self._tx() as db:
            db.executemany("DELETE FROM queue_messages WHERE id=? AND request_id=?",
                           [(i, request_id) for i in delete])
            if visible_at is not None:
                db.execute("UPDATE queue_messages SET visible_at=MIN(visible_at, ?) WHERE request_id=?",
                           (visible_at, request_id))
            db.execute("UPDATE queue_messages SET request_id=NULL WHERE request_id=?", (request_id,))

    def release_unclaimed(self, now: float) -> int:
        """At start: messages received by a poller that died before its invocation was written
        are held by no one; visible now."""
        with self._tx() as db:
            return db.execute("UPDATE queue_messages SET visible_at=? WHERE request_id IS NULL AND "
                              "receive_count > 0 AND visible_at > ?", (now, now)).rowcount

    def claimed_request_ids(self) -> list[str]:
        """Invocations that got messages and whose end has not been applied to them yet."""
        rows = self.db.execute("SELECT DISTINCT request_id FROM queue_messages WHERE request_id IS NOT NULL")
        return [r[0] for r in rows.fetchall()]

    def claimed_message_ids(self, request_id: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM queue_messages WHERE request_id=?", (request_id,)).fetchall()
        return [r[0] for r in rows]

    def count_messages(self, name: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM queue_messages WHERE queue=?", (name,)).fetchone()[0]

    def peek_messages(self, name: str, limit: int = 100) -> list[dict]:
        rows = self.db.execute(f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM queue_messages WHERE queue=? "
                               f"ORDER BY seq LIMIT ?", (name, int(limit))).fetchall()
        return [_message(r) for r in rows]

    def move_messages(self, source: str, target: str, now: float) -> int:
        """Redrive: every message of ``source`` (a dead-letter queue) back to ``target``, visible now,
        its receive count from zero."""
        with self._tx() as db:
            cur = db.execute("UPDATE queue_messages SET queue=?, visible_at=?, receive_count=0, "
                             "receipt_handle=NULL, request_id=NULL WHERE queue=?", (target, now, source))
            return cur.rowcount
