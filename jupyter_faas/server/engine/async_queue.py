"""Asynchronous (``Event``) invocations: the durable queue, retries, destinations, dead letters.

::

    invoke_async ─► row in the store (queued, payload kept): accepted = on disk (Lambda's 202)
      ─► admission, as any queued invocation (never throttled: over a limit it waits)
      ─► attempt n (older than max_event_age? not started: EventAgeExceeded)
      ─► _end: a function error, timeout, OOM or crash, with retries left and young enough
      │     ─► the attempt recorded and the row queued again, in one transaction
      │     ─► timer: retry_delay × 2^(n-1), ±25 % jitter ─► admission again (same request id)
      └─► otherwise: terminal row (the group commit) ─► the last attempt recorded
            ─► a destination record (Lambda's shape) to on_success / on_failure: another
               function's Event invocation, a queue, or a file in a directory; a failure
               with no on_failure goes to the dead-letter list (redrive submits it again)

Every attempt is its own START..REPORT under the one request id (the handler's
``context.aws_request_id`` stays the same, so it can be idempotent), and its own
``attempts`` row.  Durability: an Event invocation that was running when the server
died is an attempt that ended ``Runtime.ServerStopped``; it is retried like any
failure (Lambda's at-least-once), so every accepted event runs at least once, and one
whose end was recorded is never run again.

Events are JSON (as Lambda's are): the server reads them and their results to build
destination records, and never unpickles anything.  Not here: what fires events (the
``triggers`` room), and HTTP (``api``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
from dataclasses import dataclass

from ... import limits
from ...errors import FaaSError, InvalidParameter, PayloadTooLarge
from ..model import FAILED, QUEUED, SUCCEEDED, TIMED_OUT
from .invocation import Invocation
from .service import Service
from .init_phase import InitPhaseLogs

log = logging.getLogger("jupyter_faas.server")

EVENT = "Event"
SUCCESS, RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "Success", "RetriesExhausted", "EventAgeExceeded"
#: each backoff is its nominal value times 1 ± this (so retries of many events spread out)
JITTER = 0.25
#: the account and region in ARNs of this local server
ACCOUNT, REGION = "000000000000", "local"


def function_arn(name: str, version=None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return arn if version is None else f"{arn}:{version}"


def iso_ms(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class RetryPolicy:
    """A function's event invoke config (:func:`jupyter_faas.limits.check_event_config`)."""

    retries: int = limits.RETRIES_DEFAULT
    retry_delay: float = limits.RETRY_DELAY_DEFAULT_S
    max_event_age: int = limits.EVENT_AGE_DEFAULT_S
    on_success: str | None = None
    on_failure: str | None = None

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one:
        ``retry_delay`` doubled after each retry, times ``1 ± JITTER`` (``rand`` in [0, 1))."""
        return self.retry_delay * 2 ** (attempt - 1) * (1 + JITTER * (2 * rand - 1))


def destination_record(*, request_id: str, function: dict, condition: str, attempts: int,
                       payload: bytes, timestamp: float, result: bytes | None = None,
                       error: dict | None = None) -> dict:
    """Lambda's invocation record for a destination (reference/lambda.md §5.1)."""
    record = {
        "version": "1.0",
        "timestamp": iso_ms(timestamp),
        "requestContext": {"requestId": request_id,
                           "functionArn": function_arn(function["name"], function.get("lambda_version", "$LATEST")),
                           "condition": condition, "approximateInvokeCount": attempts},
        "requestPayload": _json_or_none(payload),
    }
    if attempts == 0:
        return record  # never ran (too old when its turn came): no response
    context = {"statusCode": 200, "executedVersion": function.get("lambda_version", "$LATEST")}
    if condition == SUCCESS:
        record["responseContext"] = context
        record["responsePayload"] = _json_or_none(result)
    else:
        context["functionError"] = "Unhandled"
        record["responseContext"] = context
        error = error or {}
        trace = error.get("stackTrace") or []
        record["responsePayload"] = {"errorMessage": error.get("errorMessage"),
                                     "errorType": error.get("errorType"),
                                     "stackTrace": trace if isinstance(trace, list) else str(trace).splitlines()}
    return record


def _json_or_none(data: bytes | None):
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


class AsyncService(InitPhaseLogs, Service):
    """The :class:`~.service.Service` with Lambda's ``Event`` path.  ``random``: the jitter's
    source (a callable returning [0, 1); tests pin it)."""

    def __init__(self, *args, random=random.random, **kwargs):
        super().__init__(*args, **kwargs)
        self.random = random
        self._attempt: dict[str, int] = {}       # request id -> attempts started
        self._retry_timers: dict[str, object] = {}  # request id -> timer of its next attempt
        self._policies: dict[str, RetryPolicy] = {}
        #: ``callable(queue name, body: str)`` that sends to a local queue (set by the triggers
        #: room); None: no queues, a queue destination is logged and dropped
        self.queue_sink = None

    # ---- event invoke config ---------------------------------------------------------------

    def policy(self, name: str) -> RetryPolicy:
        policy = self._policies.get(name)
        if policy is None:
            policy = self._policies[name] = RetryPolicy(**(self.store.get_event_config(name) or {}))
        return policy

    def event_config(self, name: str) -> dict:
        self.get_function(name)
        return dict(self.policy(name).__dict__)

    def put_event_config(self, name: str, **options) -> dict:
        """Set ``name``'s retries, retry_delay, max_event_age, on_success, on_failure (unset: defaults).
        A destination must exist: a deployed function, or a directory."""
        self.get_function(name)
        unknown = set(options) - set(RetryPolicy.__dataclass_fields__)
        if unknown:
            raise InvalidParameter(f"unknown event config option(s): {', '.join(sorted(unknown))}; "
                                   f"give retries, retry_delay, max_event_age, on_success, on_failure")
        config = limits.check_event_config(**{k: v for k, v in options.items() if v is not None})
        for which in ("on_success", "on_failure"):
            target = config[which]
            if target is None:
                continue
            kind, _, rest = target.partition(":")
            if kind == "function":
                try:
                    self.get_function(rest)
                except FaaSError:
                    raise InvalidParameter(f"{which}={rest!r} names a function that is not deployed; "
                                           f"deploy it first") from None
            elif kind == "queue" and self.queue_sink is None:
                raise InvalidParameter(f"{which}={target!r}: this server has no queues yet; give a "
                                       f"function or a directory")
            elif kind == "dir" and not os.path.isdir(rest):
                raise InvalidParameter(f"{which}: the directory {rest!r} does not exist; create it first")
        self.store.put_event_config(name, config, self.clock.time())
        self._policies.pop(name, None)
        return config

    # ---- accept ----------------------------------------------------------------------------

    def invoke_async(self, name: str, payload: bytes, *, version: int | None = None,
                     triggered_by: str = "async") -> Invocation:
        """Accept one JSON event; it is on disk when this returns (Lambda answers 202)."""
        return self.invoke_async_many(name, [payload], version=version, triggered_by=triggered_by)[0]

    def invoke_async_many(self, name: str, payloads: list, *, version: int | None = None,
                          triggered_by: str = "async", write=None) -> list[Invocation]:
        """Accept JSON events for ``name`` in one transaction (all or none).

        ``write(rows)``: the store write that records them (default ``store.add_events``); a
        trigger passes one that also moves its cursor in the same transaction.
        """
        prepared = []
        for payload in payloads:
            if isinstance(payload, str):
                payload = payload.encode()
            if len(payload) > limits.ASYNC_PAYLOAD_BYTES:
                raise PayloadTooLarge(
                    f"an event of {len(payload)} bytes is over Lambda's limit for an asynchronous "
                    f"invocation ({limits.ASYNC_PAYLOAD_BYTES} bytes): pass a path or a key to the "
                    f"data instead, or call the function directly (its limit is larger)")
            try:
                json.loads(payload or b"null")
            except ValueError as exc:
                raise InvalidParameter(f"an event must be JSON (as Lambda's are): {exc}") from None
            inv, row = self._prepare(name, payload or b"null", "json", version, EVENT, True, None)
            row["triggered_by"] = inv.triggered_by = triggered_by
            prepared.append((inv, row, payload or b"null"))
        (write or self.store.add_events)([(row, payload) for _, row, payload in prepared])
        for inv, _, _ in prepared:
            self._enqueue(inv, admit=False)
        self._admit()
        return [inv for inv, _, _ in prepared]

    # ---- attempts --------------------------------------------------------------------------

    def _start(self, inv: Invocation, env, started_at: float | None = None) -> None:
        if inv.invocation_type == EVENT:
            policy = self.policy(inv.function["name"])
            if self.clock.time() - inv.created_at > policy.max_event_age:
                if self.backend.is_starting(env):
                    self.backend.discard(env)
                else:
                    self.backend.unreserve(env)
                self._expire(inv, policy)
                return
            self._attempt[inv.request_id] = inv.attempts = self._attempt.get(inv.request_id, 0) + 1
        super()._start(inv, env, started_at)

    def _expire(self, inv: Invocation, policy: RetryPolicy) -> None:
        """An event whose turn came after max_event_age: not started, failed EventAgeExceeded."""
        age = self.clock.time() - inv.created_at
        error = {"errorType": EVENT_AGE_EXCEEDED,
                 "errorMessage": f"the event was {age:.0f} s old when its next attempt was due, older "
                                 f"than max_event_age={policy.max_event_age} s; it was not started again"}
        payload = inv.payload
        inv.done.add_done_callback(lambda f: self._event_done(inv, payload, EVENT_AGE_EXCEEDED, None, f))
        self._finish(inv, FAILED, {"error": error, "error_type": EVENT_AGE_EXCEEDED}, None)

    def _end(self, inv: Invocation, status: str, error: dict | None, result: bytes | None,
             rep: dict, result_buffers: dict | None = None) -> None:
        if inv.invocation_type != EVENT:
            super()._end(inv, status, error, result, rep, result_buffers)
            return
        rid = inv.request_id
        n = self._attempt.get(rid, 1)
        policy = self.policy(inv.function["name"])
        now = self.clock.time()
        attempt = {"request_id": rid, "attempt": n, "status": status, "error": error,
                   "error_type": error and error.get("errorType"),
                   "started_at": now - (rep.get("duration_ms") or 0) / 1000, "ended_at": now,
                   **{k: rep.get(k) for k in ("duration_ms", "billed_duration_ms", "max_memory_used_mb",
                                              "init_duration_ms")}}
        payload = inv.payload
        condition = SUCCESS if status == SUCCEEDED else RETRIES_EXHAUSTED
        if status in (FAILED, TIMED_OUT) and not inv.cancel_requested and n <= policy.retries:
            delay = policy.delay(n, self.random())
            if now + delay - inv.created_at <= policy.max_event_age:
                if self._retry(inv, error, rep, attempt, delay):
                    return
            else:
                condition = EVENT_AGE_EXCEEDED
        if status not in (FAILED, TIMED_OUT, SUCCEEDED):
            condition = None  # cancelled: the user's choice, no destination
        inv.done.add_done_callback(lambda f: self._event_done(inv, payload, condition, attempt, f))
        super()._end(inv, status, error, result, rep, result_buffers)

    def _retry(self, inv: Invocation, error: dict | None, rep: dict, attempt: dict, delay: float) -> bool:
        """Record the failed attempt and queue the event again (one transaction); its next
        attempt is admitted after ``delay`` seconds.  False if the store refused (it ends)."""
        from .. import model
        rid = inv.request_id
        if error is not None:
            self._log(inv, "platform", f"[ERROR] {error['errorType']}: {error['errorMessage']}")
        self._log(inv, "platform", f"END RequestId: {rid}")
        self._log(inv, "platform", model.report_line(rid, rep, attempt["status"], attempt["error_type"]))
        logs, inv.unflushed = inv.unflushed, []
        try:
            self.store.requeue_event(attempt, logs)
        except Exception:  # noqa: BLE001 - then it ends here, recorded as failed
            log.exception("could not queue %s for a retry; it ends failed", rid)
            inv.unflushed = logs
            return False
        self._release_slot(inv)
        nxt = Invocation(rid, inv.function, inv.payload, inv.encoding, EVENT, True, inv.created_at)
        nxt.listeners = inv.listeners
        nxt.triggered_by, nxt.attempts = inv.triggered_by, inv.attempts
        nxt.logs = inv.logs

        def relay(f, waiting=inv.done):
            if not waiting.done() and not f.cancelled():
                waiting.set_result(f.result())
        nxt.done.add_done_callback(relay)
        self.active[rid] = nxt
        self.feed.invocation(nxt, attempt=attempt["attempt"], retry_in_s=round(delay, 3))
        self._retry_timers[rid] = self.clock.call_later(delay, self._retry_due, nxt)
        self._admit()
        return True

    def _retry_due(self, inv: Invocation) -> None:
        self._retry_timers.pop(inv.request_id, None)
        if inv.status == QUEUED and self.active.get(inv.request_id) is inv:
            self._enqueue(inv)

    # ---- the end: destinations and dead letters --------------------------------------------

    def _event_done(self, inv: Invocation, payload: bytes, condition: str | None, attempt, fut) -> None:
        rid = inv.request_id
        n = self._attempt.pop(rid, 0)
        if condition is None or fut.cancelled():
            return
        done, result = fut.result()
        policy = self.policy(inv.function["name"])
        now = self.clock.time()
        error = done.get("error")
        target = policy.on_success if condition == SUCCESS else policy.on_failure
        dead = None
        if condition != SUCCESS and target is None:
            dead = {"request_id": rid, "function": inv.function["name"], "payload": payload,
                    "input_summary": payload[:200].decode("utf-8", "replace"), "condition": condition,
                    "error_type": error and error.get("errorType"),
                    "error_message": error and (error.get("errorMessage") or "")[:1024],
                    "attempts": n, "created_at": now}
        try:
            self.store.event_ended(attempt, n, dead)
        except Exception:  # noqa: BLE001 - the invocation's own end is recorded already
            log.exception("could not record the end of event %s", rid)
        if dead is not None:
            self.feed.emit({"type": "dead_letter", "request_id": rid, "function": inv.function["name"],
                            "condition": condition})
        if target is not None:
            record = destination_record(request_id=rid, function=inv.function, condition=condition,
                                        attempts=n, payload=payload, timestamp=now, result=result,
                                        error=error)
            self.deliver(target, record, rid)

    def deliver(self, target: str, record: dict, request_id: str) -> None:
        """Send a destination record to ``function:<name>``, ``queue:<name>`` or ``dir:<path>``."""
        kind, _, rest = target.partition(":")
        body = json.dumps(record, separators=(",", ":"))
        try:
            if kind == "function":
                self.invoke_async(rest, body.encode(), triggered_by="destination")
            elif kind == "queue":
                if self.queue_sink is None:
                    raise InvalidParameter("this server has no queues")
                self.queue_sink(rest, body)
            elif kind == "dir":
                stamp = record["timestamp"].replace(":", "").replace("-", "")
                path = os.path.join(rest, f"{stamp}-{request_id}.json")
                with open(path + ".tmp", "w") as f:
                    f.write(body)
                os.replace(path + ".tmp", path)
        except (FaaSError, OSError) as exc:
            log.warning("could not deliver the %s record of %s to %s: %s",
                        record["requestContext"]["condition"], request_id, target, exc)

    def dead_letters(self, function: str | None = None, limit: int = 100) -> list[dict]:
        return self.store.dead_letters(function, limit)

    def redrive(self, ids: list | None = None, function: str | None = None) -> list[dict]:
        """Submit dead letters again as new Event invocations; returns ``{id, request_id}`` pairs."""
        if ids is None:
            ids = [d["id"] for d in self.store.dead_letters(function, limit=10_000)]
        out = []
        for entry_id, name, payload in self.store.dead_letter_payloads(ids):
            inv = self.invoke_async(name, payload, triggered_by="redrive")
            out.append((entry_id, inv.request_id, name))
        if out:
            self.store.mark_redriven([(i, rid) for i, rid, _ in out], self.clock.time())
        return [{"id": i, "request_id": rid, "function": name} for i, rid, name in out]

    def attempts(self, request_id: str) -> list[dict]:
        self.get_invocation(request_id)
        return self.store.attempts(request_id)

    # ---- restart ---------------------------------------------------------------------------

    def recover(self) -> dict:
        """Events that were running when the server died: that attempt ended
        ``Runtime.ServerStopped``; retried if retries remain, else failed (dead letter)."""
        now = self.clock.time()
        retried, given_up = 0, []
        for row in self.store.running_events():
            rid, n = row["request_id"], (row["attempts"] or 0) + 1
            policy = self.policy(row["function"])
            error = {"errorType": "Runtime.ServerStopped",
                     "errorMessage": "the FaaS server stopped during this attempt; it may have run partly"}
            attempt = {"request_id": rid, "attempt": n, "status": FAILED, "error": error,
                       "error_type": error["errorType"], "started_at": row["started_at"], "ended_at": now}
            if n <= policy.retries and now - row["created_at"] <= policy.max_event_age:
                line = (now, "platform", f"[ERROR] Runtime.ServerStopped: attempt {n} was running when the "
                                         f"server stopped; it is retried")
                self.store.requeue_event(attempt, [line])
                retried += 1
            else:
                given_up.append((row, attempt, self.store.get_payload(rid), n))
        self._attempt.update(self.store.queued_event_attempts())
        counts = super().recover()
        for row, attempt, payload, n in given_up:  # failed ServerStopped by the base recovery
            dead = {"request_id": row["request_id"], "function": row["function"], "payload": payload,
                    "input_summary": payload[:200].decode("utf-8", "replace"),
                    "condition": RETRIES_EXHAUSTED, "error_type": "Runtime.ServerStopped",
                    "error_message": attempt["error"]["errorMessage"], "attempts": n, "created_at": now}
            self.store.event_ended(attempt, n, dead)
        return dict(counts, events_retried=retried, events_failed=len(given_up))

    def stats(self) -> dict:
        return dict(super().stats(), retrying=len(self._retry_timers))

    async def close(self) -> None:
        for timer in self._retry_timers.values():
            timer.cancel()
        await super().close()
