"""Local queues with SQS semantics, and the ``queue`` trigger kind: a poller per subscription
(Lambda's event source mapping) that invokes its function with SQS-shaped batches.

::

    send ─► rows in queue_messages (durable; delay: visible later) ─► wake the pollers
    poller: while in-flight batches < the function's concurrency and messages are visible
      ─► receive ≤ batch_size (up to batch_window s to fill it): each made invisible for the
         visibility timeout, ApproximateReceiveCount + 1; one already received
         max_receive_count times moves to the dead-letter queue instead
      ─► a RequestResponse invocation {"Records": [...]}, written with the messages claimed
         by its request id in one transaction (Store.add_batch_invocation)
      ─► its end: success deletes the batch, minus the batchItemFailures it returned (if
         report_batch_item_failures); any error keeps the whole batch, which is received
         again when its visibility timeout expires (SQS's rule; at-least-once)

Durability: a message is a row until it is deleted.  A restart settles every claimed
message from its invocation's recorded end (so a message whose run's end was recorded
is never run again), re-attaches to invocations the restart re-queued, and makes the
messages no one holds any more (their batch was running when the server died, or never
written) visible at once rather than after their visibility timeout.  Not here: FIFO queues, message groups,
long polling from clients (only subscriptions receive).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid

from ... import limits
from ...errors import FaaSError, InvalidParameter, ResourceNotFound
from ...vocabulary import QUEUED, SUCCEEDED, TERMINAL
from ..engine.async_queue import ACCOUNT, REGION

log = logging.getLogger("jupyter_faas.server")

#: SQS's largest message body (UTF-8 bytes)
MAX_BODY_BYTES = 256 * 1024
#: SQS's DelaySeconds range
MAX_DELAY_S = 900
BATCH_MIN, BATCH_MAX = 1, 10_000
#: Lambda: a batch over 10 needs a batching window; at most 300 s
MAX_WINDOW_S = 300.0
MAX_RECEIVE_MIN, MAX_RECEIVE_MAX = 1, 1000
#: Lambda's advice for an event source mapping: a visibility timeout 6 × the function's timeout
VISIBILITY_FACTOR = 6
#: when the queue looks empty, a poller looks again at least this often (a send wakes it at once)
IDLE_POLL_S = 1.0
#: most batches a poller keeps in flight, whatever the function's concurrency
MAX_POLLERS = 1000


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def message_attributes(attributes) -> dict:
    """``{"k": "v", "n": 5}`` or SQS's own shape -> SQS's ``messageAttributes`` shape."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise InvalidParameter("attributes must be a dict of name -> string, number or "
                               "{'dataType': ..., 'stringValue': ...}")
    out = {}
    for key, value in attributes.items():
        if isinstance(value, dict) and "dataType" in value:
            out[key] = {"stringValue": value.get("stringValue"), "stringListValues": [],
                        "binaryListValues": [], "dataType": value["dataType"]}
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidParameter(f"attribute {key!r}={value!r}: give a string or a number")
        else:
            out[key] = {"stringValue": str(value), "stringListValues": [], "binaryListValues": [],
                        "dataType": "String" if isinstance(value, str) else "Number"}
    return out


def sqs_record(m: dict, queue: str) -> dict:
    """One message as Lambda's SQS event source mapping passes it (reference/lambda.md §6)."""
    return {"messageId": m["id"], "receiptHandle": m["receipt_handle"], "body": m["body"],
            "attributes": {"ApproximateReceiveCount": str(m["receive_count"]),
                           "SentTimestamp": str(int(m["sent_at"] * 1000)), "SenderId": ACCOUNT,
                           "ApproximateFirstReceiveTimestamp": str(int(m["first_received_at"] * 1000))},
            "messageAttributes": m["message_attributes"], "md5OfBody": m["md5"], "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn(queue), "awsRegion": REGION}


def failed_items(result: bytes | None, ids: set) -> set | None:
    """The ids a ``{"batchItemFailures": [...]}`` result sends back; None: the whole batch failed
    (a malformed response or an unknown identifier, as Lambda rules)."""
    try:
        value = json.loads(result) if result else None
    except ValueError:
        return set()   # not JSON: a plain return value, the batch succeeded
    if not isinstance(value, dict) or value.get("batchItemFailures") is None:
        return set()
    items = value["batchItemFailures"]
    if not isinstance(items, list):
        return None
    out = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if ident not in ids:
            return None
        out.add(ident)
    return out


class Queues:
    """The queues: create, send, counts, redrive of a dead-letter queue.  ``on_send(name)``
    is called after each send (the pollers wake)."""

    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.on_send = lambda name: None

    def create(self, name: str, visibility_timeout: float | None = None) -> dict:
        if not isinstance(name, str) or not limits.NAME_RE.match(name):
            raise InvalidParameter(f"queue name {name!r}: letters, digits, - and _, up to 64")
        if visibility_timeout is not None:
            if (isinstance(visibility_timeout, bool) or not isinstance(visibility_timeout, (int, float))
                    or not 0 <= visibility_timeout <= 43200):
                raise InvalidParameter(f"visibility_timeout={visibility_timeout!r}: give seconds from 0 "
                                       f"to 43200 (SQS's range), or None for 6 × the function's timeout")
        existing = self.store.get_queue(name)
        if existing is not None and existing["redrive_to"]:
            self.store.add_queue(name, self.clock.time(), visibility_timeout, None)
        else:
            self.store.add_queue(name, self.clock.time(), visibility_timeout, f"{name}-dlq")
        return self.get(name)

    def get(self, name: str) -> dict:
        row = self.store.get_queue(name)
        if row is None:
            raise ResourceNotFound(f"Queue not found: {name}; create it with faas.queue({name!r})")
        counts = self.store.queue_counts(name, self.clock.time())
        return dict(row, **counts, arn=queue_arn(name),
                    messages=counts["visible"] + counts["in_flight"] + counts["delayed"])

    def list(self) -> list[dict]:
        return [self.get(q["name"]) for q in self.store.queues()]

    def send(self, name: str, messages: list) -> list[str]:
        """``[{"body": str, "attributes": {...}, "delay": seconds}]``, in one transaction."""
        if self.store.get_queue(name) is None:
            raise ResourceNotFound(f"Queue not found: {name}; create it with faas.queue({name!r})")
        if not isinstance(messages, list) or not messages:
            raise InvalidParameter("give a non-empty list of messages")
        now = self.clock.time()
        rows = []
        for m in messages:
            body = m.get("body") if isinstance(m, dict) else None
            if not isinstance(body, str):
                raise InvalidParameter(f"a message body is a string (JSON-encode other values), not {body!r}")
            data = body.encode()
            if len(data) > MAX_BODY_BYTES:
                raise InvalidParameter(f"a message body of {len(data)} bytes is over SQS's limit of "
                                       f"{MAX_BODY_BYTES} bytes")
            delay = m.get("delay", 0)
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_DELAY_S:
                raise InvalidParameter(f"delay={delay!r}: give seconds from 0 to {MAX_DELAY_S}")
            rows.append({"id": str(uuid.uuid4()), "body": body,
                         "message_attributes": message_attributes(m.get("attributes")),
                         "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(), "sent_at": now,
                         "visible_at": now + delay})
        self.store.send_messages(name, rows)
        self.on_send(name)
        return [r["id"] for r in rows]

    def send_one(self, name: str, body: str) -> None:
        """A ``queue:<name>`` destination: the record as one message (the queue made if need be)."""
        if self.store.get_queue(name) is None:
            self.create(name)
        self.send(name, [{"body": body}])

    def redrive(self, name: str) -> dict:
        """Move every message of the dead-letter queue ``name`` back to its source queue."""
        row = self.get(name)
        target = row["redrive_to"]
        if not target:
            raise InvalidParameter(f"{name} is not a dead-letter queue; redrive its "
                                   f"dead_letter_queue ({row['dead_letter_queue']})")
        moved = self.store.move_messages(name, target, self.clock.time())
        self.on_send(target)
        return {"moved": moved, "to": target}

    def peek(self, name: str, limit: int = 100) -> list[dict]:
        self.get(name)
        return [{"messageId": m["id"], "body": m["body"], "receiveCount": m["receive_count"],
                 "sentAt": m["sent_at"]} for m in self.store.peek_messages(name, limit)]


class Subscriptions:
    """The ``queue`` trigger kind: one poller task per enabled subscription."""

    def __init__(self, service, queues: Queues):
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.queues = queues
        queues.on_send = self._wake_queue
        self.pollers: dict[str, asyncio.Task] = {}
        self.wakes: dict[str, asyncio.Event] = {}
        self.in_flight: dict[str, set] = {}  # trigger id -> request ids of its batches running

    # ---- the spec ------------------------------------------------------------------------

    def check(self, spec: dict) -> dict:
        allowed = {"queue", "batch_size", "batch_window", "report_batch_item_failures", "max_receive_count"}
        unknown = set(spec) - allowed
        if unknown:
            raise InvalidParameter(f"a queue subscription takes {', '.join(sorted(allowed))}, not "
                                   f"{', '.join(sorted(unknown))}")
        queue = spec.get("queue")
        row = self.store.get_queue(queue) if isinstance(queue, str) else None
        if row is None:
            raise InvalidParameter(f"queue={queue!r} is not a queue; create it with faas.queue(name)")
        problems = []
        size = spec.get("batch_size", 10)
        if isinstance(size, bool) or not isinstance(size, int) or not BATCH_MIN <= size <= BATCH_MAX:
            problems.append(f"batch_size={size!r} is out of range: give a whole number from "
                            f"{BATCH_MIN} to {BATCH_MAX:,}")
        window = spec.get("batch_window", 0.0)
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 <= window <= MAX_WINDOW_S:
            problems.append(f"batch_window={window!r} is out of range: give seconds from 0 to {MAX_WINDOW_S:g}")
        elif isinstance(size, int) and size > 10 and window <= 0:
            problems.append(f"batch_size={size} needs a batch_window above 0 (Lambda's rule for batches "
                            f"over 10)")
        partial = spec.get("report_batch_item_failures", True)
        if not isinstance(partial, bool):
            problems.append(f"report_batch_item_failures={partial!r} is not true or false")
        receives = spec.get("max_receive_count", 3)
        if (isinstance(receives, bool) or not isinstance(receives, int)
                or not MAX_RECEIVE_MIN <= receives <= MAX_RECEIVE_MAX):
            problems.append(f"max_receive_count={receives!r} is out of range: give a whole number from "
                            f"{MAX_RECEIVE_MIN} to {MAX_RECEIVE_MAX}")
        if problems:
            raise InvalidParameter("; ".join(problems))
        return {"queue": queue, "batch_size": size, "batch_window": float(window),
                "report_batch_item_failures": partial, "max_receive_count": receives}

    def initial_state(self, row: dict) -> dict:
        return {}

    def describe(self, row: dict) -> dict:
        queue = self.store.get_queue(row["spec"]["queue"])
        if queue is None:
            return {}
        now = self.clock.time()
        counts = self.store.queue_counts(queue["name"], now)
        dlq = queue["dead_letter_queue"]
        return {"depth": counts["visible"] + counts["delayed"], "in_flight": counts["in_flight"],
                "dead_letter_queue": dlq,
                "dead_letters": self.store.count_messages(dlq) if dlq else 0}

    # ---- running -------------------------------------------------------------------------

    def start(self, row: dict, restart: bool = False) -> None:
        self.stop(row["id"])
        self.wakes[row["id"]] = asyncio.Event()
        self.in_flight.setdefault(row["id"], set())
        self.pollers[row["id"]] = self.service.spawn(self._poll(row["id"]))

    def stop(self, trigger_id: str) -> None:
        task = self.pollers.pop(trigger_id, None)
        if task is not None:
            task.cancel()
        self.wakes.pop(trigger_id, None)

    def close(self) -> None:
        for trigger_id in list(self.pollers):
            self.stop(trigger_id)

    def recover(self) -> int:
        """At start: settle every claimed message from its invocation's recorded end, or follow
        the invocation a restart queued again.  Returns how many invocations it settled."""
        settled = 0
        now = self.clock.time()
        self.store.release_unclaimed(now)
        for rid in self.store.claimed_request_ids():
            row = self.store.get_invocation(rid)
            inv = self.service.active.get(rid)
            if row is not None and row["status"] in TERMINAL:
                # one the server's stop ended is held by no one: its messages are visible now
                stopped = (row.get("error_type") or "") == "Runtime.ServerStopped"
                self._settle(rid, row["function"], row["status"], self.store.get_result(rid),
                             visible_at=now if stopped else None)
                settled += 1
            elif row is not None and row["status"] == QUEUED and inv is not None:
                inv.done.add_done_callback(lambda f, rid=rid, name=row["function"]: self._ended(None, rid, name, f))
            else:  # lost: back when its visibility timeout expires
                self.store.settle_messages(rid, [])
        return settled

    def _wake_queue(self, name: str) -> None:
        for trigger_id, wake in self.wakes.items():
            row = self.store.get_trigger(trigger_id)
            if row is not None and row["spec"]["queue"] == name:
                wake.set()

    def _concurrency(self, function: dict) -> int:
        """The most batches in flight: the function's reserved concurrency, else what the
        server's limits allow at the function's memory size."""
        limit = function.get("concurrency")
        if limit is None:
            slots = self.service.slots
            limit = max(1, slots.memory_budget_mb // max(function["memory"], 1))
            if slots.max_concurrency is not None:
                limit = min(limit, slots.max_concurrency)
        return max(1, min(limit, MAX_POLLERS))

    async def _wait(self, trigger_id: str, timeout: float) -> None:
        wake = self.wakes.get(trigger_id)
        if wake is None:
            await asyncio.sleep(timeout)
            return
        try:
            await asyncio.wait_for(wake.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            pass
        wake.clear()

    async def _poll(self, trigger_id: str) -> None:
        in_flight = self.in_flight[trigger_id]
        while True:
            try:
                row = self.store.get_trigger(trigger_id)
                if row is None or not row["enabled"]:
                    return
                function = self.service.get_function(row["function"])
                if len(in_flight) >= self._concurrency(function):
                    await self._wait(trigger_id, IDLE_POLL_S)
                    continue
                batch = await self._collect(trigger_id, row["spec"], function)
                if not batch:
                    now = self.clock.time()
                    nxt = self.store.next_visible_at(row["spec"]["queue"], now)
                    await self._wait(trigger_id, min(IDLE_POLL_S, (nxt - now) if nxt else IDLE_POLL_S))
                    continue
                self._invoke(trigger_id, row, function, batch)
            except asyncio.CancelledError:
                raise
            except ResourceNotFound:  # its function was deleted: idle until it is back
                await self._wait(trigger_id, IDLE_POLL_S)
            except Exception:  # noqa: BLE001 - a poller that broke once tries again
                log.exception("queue subscription %s", trigger_id)
                await self._wait(trigger_id, IDLE_POLL_S)

    async def _collect(self, trigger_id: str, spec: dict, function: dict) -> list[dict]:
        """Receive up to batch_size messages, waiting up to batch_window to fill the batch."""
        queue = self.store.get_queue(spec["queue"])
        timeout = queue["visibility_timeout"]
        if timeout is None:
            timeout = VISIBILITY_FACTOR * function["timeout"]
        batch: list[dict] = []
        deadline = self.clock.time() + spec["batch_window"]
        while True:
            now = self.clock.time()
            got, dead = self.store.receive_messages(
                queue["name"], spec["batch_size"] - len(batch), now, now + timeout, spec["max_receive_count"],
                queue["dead_letter_queue"], lambda: uuid.uuid4().hex + uuid.uuid4().hex, trigger_id)
            if dead:
                log.info("queue %s: %d message(s) received %d times moved to %s", queue["name"], len(dead),
                         spec["max_receive_count"], queue["dead_letter_queue"])
                self.service.feed.emit({"type": "queue_dead_letter", "queue": queue["name"],
                                        "moved": len(dead)})
            batch.extend(got)
            if len(batch) >= spec["batch_size"] or now >= deadline:
                return batch
            await self._wait(trigger_id, deadline - now)

    def _invoke(self, trigger_id: str, row: dict, function: dict, batch: list[dict]) -> None:
        queue = row["spec"]["queue"]
        payload = json.dumps({"Records": [sqs_record(m, queue) for m in batch]},
                             separators=(",", ":")).encode()
        claims = [(m["id"], m["receipt_handle"]) for m in batch]
        try:
            inv = self.service.submit(
                function["name"], payload, encoding="json", queue=True,
                write=lambda r, p: self.store.add_batch_invocation(r, p, claims))
        except FaaSError as exc:  # back after their visibility timeout
            log.warning("queue subscription %s could not invoke %s: %s", trigger_id, function["name"], exc)
            return
        inv.triggered_by = "queue"
        in_flight = self.in_flight.setdefault(trigger_id, set())
        in_flight.add(inv.request_id)
        inv.done.add_done_callback(lambda f: self._ended(trigger_id, inv.request_id, function["name"], f))

    def _ended(self, trigger_id: str | None, request_id: str, name: str, fut) -> None:
        if trigger_id is not None:
            self.in_flight.get(trigger_id, set()).discard(request_id)
            wake = self.wakes.get(trigger_id)
            if wake is not None:
                wake.set()
        if fut.cancelled():
            self.store.settle_messages(request_id, [])
            return
        done, result = fut.result()
        try:
            self._settle(request_id, name, done["status"], result)
        except Exception:  # noqa: BLE001 - they stay claimed; the next start settles them
            log.exception("could not settle the messages of %s", request_id)

    def _settle(self, request_id: str, name: str, status: str, result: bytes | None,
                visible_at: float | None = None) -> None:
        ids = self.store.claimed_message_ids(request_id)
        if status != SUCCEEDED:
            self.store.settle_messages(request_id, [], visible_at)
            return
        partial = True
        for t in self.store.triggers(name, "queue"):
            partial = t["spec"].get("report_batch_item_failures", True)
            break
        failed = failed_items(result, set(ids)) if partial else set()
        if failed is None:
            self.store.settle_messages(request_id, [])
            return
        self.store.settle_messages(request_id, [i for i in ids if i not in failed])
