"""``@faas.function`` and the handle it returns: call, local, spawn, map, starmap, invoke.

The function is pickled by value and deployed on first use (or by ``.deploy()``);
the same code and configuration deploy as the same version.  Blocking calls
cancel what they started on Ctrl-C (queued invocations are dropped, running ones
killed) and leave the handle usable.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import functools
import hashlib
import itertools
import marshal
import os
import re
import reprlib
import threading
import time
import types
import typing
import uuid

from kernel_workers.context import LambdaContext, call_with_context, context_parameter
from kernel_workers.init import Plain, WithInit

from .. import errors, limits
from ..display import CallView, MapView
from . import dependencies, events, lambda_api, triggers, waiting
from .cell import CellFunction
from .discovery import default_connection
from .invocation import Invocation, InvocationFuture
from .serialization import dumps_call, dumps_function
from .remote_errors import RemoteTraceback


class RemoteFunction:
    """A function that runs in execution environments; made by :func:`function`."""

    def __init__(self, fn, *, name: str | None = None, memory: int | None = None,
                 timeout: float | None = None, env: dict | None = None,
                 concurrency: int | None = None, show: bool | None = None, connection=None,
                 retries: int | None = None, retry_delay: float | None = None,
                 max_event_age: int | None = None, on_success=None, on_failure=None,
                 init=None, snapshot: bool | None = None, layers: list | None = None,
                 backend: str | None = None):
        if not callable(fn):
            raise errors.InvalidParameter(f"faas.function wraps a function, not {type(fn).__name__}")
        if isinstance(fn, RemoteFunction):
            # Re-wrapping: the new options win; the ones not given are the wrapped handle's.
            base, fn = fn, fn._fn
            name = base.name if name is None else name
            memory = base.config["memory"] if memory is None else memory
            timeout = base.config["timeout"] if timeout is None else timeout
            env = base.config["env"] if env is None else env
            concurrency = base.config["concurrency"] if concurrency is None else concurrency
            layers = base.config.get("layers") if layers is None else layers
            show = base.show if show is None else show
            backend = base.config.get("backend") if backend is None else backend
            init = base._init if init is None else init
            snapshot = base._snapshot if snapshot is None else snapshot
            connection = base._connection if connection is None else connection
            given = {"retries": retries, "retry_delay": retry_delay, "max_event_age": max_event_age,
                     "on_success": on_success, "on_failure": on_failure}
            kept = {k: v if v is not None else base._event_options[k] for k, v in given.items()}
            retries, retry_delay, max_event_age, on_success, on_failure = kept.values()
        checked = limits.check_options(
            name=(limits.check_name, default_name(fn) if name is None else name),
            memory=(limits.check_memory, limits.MEMORY_DEFAULT_MB if memory is None else memory),
            timeout=(limits.check_timeout, limits.TIMEOUT_DEFAULT_S if timeout is None else timeout),
            env=(limits.check_env, env), concurrency=(limits.check_concurrency, concurrency),
            show=(_check_show, show), layers=(limits.check_layers, layers),
            backend=(limits.check_backend, backend))
        if init is not None and not callable(init):
            raise errors.InvalidParameter(f"init={init!r} is not callable: give a function that "
                                          f"runs once per execution environment")
        if snapshot is not None and not isinstance(snapshot, bool):
            raise errors.InvalidParameter(f"snapshot={snapshot!r} is invalid: give True or False")
        self._fn = fn
        self._init = init
        self._snapshot = snapshot
        self._local_init_done = False
        self.name = checked.pop("name")
        # None: a live view for calls over a second; True: always; False: never
        self.show = checked.pop("show")
        if not checked["layers"]:
            del checked["layers"]  # none: the config (and so the version) as before layers existed
        if checked["backend"] is None:  # a function that names none keeps its version
            del checked["backend"]
        self.config = checked
        # Lambda's event invoke config (invoke_async and triggers): per function, not per version
        self._event_options = {"retries": retries, "retry_delay": retry_delay,
                               "max_event_age": max_event_age, "on_success": on_success,
                               "on_failure": on_failure}
        self.event_config = events.event_config(retries, retry_delay, max_event_age, on_success, on_failure)
        self._destinations = events.destination_handles(on_success, on_failure)
        self._connection = connection
        self._deployed: _Deployed | None = None
        # Only the function's identity: a callable object's own attributes (``self.name``,
        # ``self.config`` of a model) must not replace this handle's.
        functools.update_wrapper(self, fn, updated=())

    def __repr__(self) -> str:
        if self.qualifier is not None:
            return f"<RemoteFunction {self.name}:{self.qualifier} memory={self.config['memory']}>"
        return (f"<RemoteFunction {self.name} memory={self.config['memory']} "
                f"timeout={self.config['timeout']:g}>")

    @property
    def connection(self):
        return self._connection or default_connection()

    # ---- deploy ------------------------------------------------------------------------------

    def deploy(self, force: bool = False) -> int:
        """Deploy the function as it is now and return its version.

        Nothing is sent while nothing it reads has changed (an identity check of its globals,
        helpers, closure and defaults: see :mod:`.dependencies`).  Redefining a helper or
        rebinding a global makes a new pickle, and so a new version; the same pickle keeps its
        version.  ``force=True`` pickles again even so (after changing an object in place).
        Raises :class:`~jupyter_faas.SerializationError` when something it needs cannot be pickled.
        """
        if self.qualifier is not None:
            return self.qualifier  # on the server already (faas.lookup): nothing to deploy
        conn = self.connection
        deployed = self._deployed
        if deployed is not None and deployed.connection is conn and not force \
                and not deployed.snapshot.changed():
            return deployed.version
        code = dumps_function(self._deployable(), self.name)
        snapshot = self._dependencies()  # after: pickling registers local modules
        sha = hashlib.sha256(code).hexdigest()
        if deployed is not None and deployed.connection is conn and deployed.sha256 == sha:
            version = deployed.version
        else:
            body = {"name": self.name, "code": base64.b64encode(code).decode(), **self.config}
            if self._has_init() or self._snapshot is not None:
                # Cold starts fork from a snapshot taken after INIT (backends/local/snapshots.py)
                body["snapshot"] = self._snapshot is not False
            version = conn.request("POST", "/faas/api/functions", body)["version"]
            for handle in self._destinations:
                handle.deploy()
            conn.request("PUT", f"/faas/api/functions/{self.name}/event-config", self.event_config)
        self._deployed = _Deployed(conn, sha, version, snapshot)
        return version

    def _has_init(self) -> bool:
        return self._init is not None or isinstance(self._fn, CellFunction)

    def _deployable(self):
        """What is pickled: the function, or with its INIT (:mod:`kernel_workers.init`)."""
        allowed = self._snapshot is not False
        if isinstance(self._fn, CellFunction):
            return self._fn.module(allowed)
        if self._init is not None:
            return WithInit(self._fn, self._init, allowed)
        if self._snapshot is not None:
            return Plain(self._fn, allowed)
        return self._fn

    def _dependencies(self) -> dependencies.Snapshot:
        if isinstance(self._fn, CellFunction):
            return self._fn.dependencies()
        snap = dependencies.snapshot(self._fn)
        if self._init is not None:
            extra = dependencies.snapshot(self._init)
            snap.entries += extra.entries
            snap.cells += extra.cells
            snap.attributes += extra.attributes
        return snap

    @property
    def version(self) -> int:
        return self.deploy()

    # ---- Lambda's versions and aliases (client/lambda_api.py, client/lookup.py) ---------------

    #: for a handle on a function already on the server (``faas.lookup``): the qualifier its
    #: calls carry, resolved by the server per call; None for a function of this process
    qualifier: str | None = None

    @classmethod
    def on_server(cls, name: str, qualifier: str, config: dict, *, connection=None, show=None):
        """A handle on ``name:qualifier`` as the server has it (what ``faas.lookup`` returns)."""
        handle = cls.__new__(cls)
        handle._fn, handle.name, handle.qualifier, handle.config = None, name, qualifier, config
        handle.show, handle._connection, handle._deployed = show, connection, None
        handle.__name__ = handle.__qualname__ = name
        return handle

    def publish(self, description: str = "") -> int:
        """Publish the function as it is now as its next numbered (immutable) version; returns
        the number.  ``faas.lookup(f"{name}:{n}")`` calls it."""
        self.deploy()
        return lambda_api.publish_version(self.connection, self.name, description)

    def alias(self, name: str, *, version, weights: dict | None = None, description: str = ""):
        """Point the alias ``name`` at published ``version`` (or ``"$LATEST"``), ``weights``
        sending a share of the calls to one other version (``{2: 0.1}``); returns its handle."""
        lambda_api.put_alias(self.connection, self.name, name, version, weights, description)
        config = lambda_api.configuration(self.connection, self.name, name)
        return RemoteFunction.on_server(self.name, name, config, connection=self._connection, show=self.show)

    # ---- provisioned concurrency (client/provisioned.py) --------------------------------------

    def provision(self, n: int, *, wait: float = 60.0) -> dict | None:
        """Keep ``n`` execution environments of this function started and initialized (INIT
        done), so calls find them warm: Lambda's provisioned concurrency.  ``0`` stops.

        A decorated (or ``%%lambda``) function is provisioned as ``$LATEST``, what its calls
        run: the function as it is now is deployed, and its environments follow each new
        version it deploys (the old version's stop: idle ones at once, busy ones when they finish).  A
        ``faas.lookup("f:3")`` or ``faas.lookup("f:live")`` handle provisions that published
        version or alias, as Lambda does.  Calls use a provisioned environment first; their
        REPORT has no Init Duration, and the invocation's ``init_type`` (its row,
        ``inv.report.init_type``) is ``provisioned-concurrency``.

        Waits up to ``wait`` seconds (0..900; 0: not at all) for the environments to be up and
        returns the state: ``{"qualifier", "requested", "allocated", "in_use", "status"
        ("IN_PROGRESS" | "READY" | "FAILED"), "reason", "versions", "environments" (ids),
        "updated_at"}``; None for ``n=0``.  Raises InvalidParameter for a bad ``n``, over the
        function's reserved concurrency or the server's limits (max_concurrency, the memory
        budget), or on a backend without provisioned concurrency (Dask); FunctionError when
        the environments cannot start (INIT fails: ``reason`` says why); ServerError when
        they were not all up within ``wait`` (they keep starting).
        """
        from . import provisioned
        provisioned.check(n, wait)
        if self.qualifier is None:
            self._deployed = None  # deploy again, so this handle's version is $LATEST now
        self.deploy()
        return provisioned.provision(self.connection, self.name, self.qualifier or "$LATEST", n, wait)

    def provisioned(self) -> dict | None:
        """The state :meth:`provision` returns, now (None: not provisioned)."""
        from . import provisioned
        return provisioned.provisioned(self.connection, self.name, self.qualifier or "$LATEST")

    # ---- calls -------------------------------------------------------------------------------

    def local(self, *args, **kwargs):
        """Run in this process (for debugging); no limits, no record.

        A Lambda-shaped call (``f.local(event)`` on ``def handler(event, context)``) gets a
        local context with the remote one's attributes (``function_version`` is ``$LATEST``).
        """
        if self.qualifier is not None:
            raise errors.InvalidParameter(f"{self.name}:{self.qualifier} was looked up on the server: its "
                                          f"code is not in this process, so it cannot run locally. Call it.")
        if self._init is not None and not self._local_init_done:
            self._init()  # INIT, in this process, once
            self._local_init_done = True
        return call_with_context(self._fn, context_parameter(self._fn), args, kwargs,
                                 self._local_context)

    def _local_context(self) -> LambdaContext:
        deadline_ms = int((time.time() + self.config["timeout"]) * 1000)
        return LambdaContext(str(uuid.uuid4()), self.name, "$LATEST", self.config["memory"],
                             deadline_ms)

    def _submit(self, payload, queue: bool, encoding: str = "pickle") -> InvocationFuture:
        version = self.deploy()
        conn = self.connection
        fut = InvocationFuture(self.name, conn, encoding)
        conn.submit(fut, self.name, payload, encoding=encoding, queue=queue, logs=True, version=version)
        return fut

    def spawn(self, *args, **kwargs) -> InvocationFuture:
        """Start one invocation and return its future at once."""
        conn = self.connection
        fut = self._submit(dumps_call(args, kwargs, self.name, conn.buffer_dir, conn.max_payload_bytes),
                           queue=False)
        fut.input_summary = _summary(args, kwargs)
        return fut

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame
        try:
            return self._call(args, kwargs, raise_first=True).result()
        except Exception as exc:
            if _trim(exc):
                raise exc.with_traceback(None)  # its cause (the remote traceback) stays
            raise

    def invoke(self, *args, **kwargs) -> Invocation:
        """Run once and return the :class:`Invocation` (status, result, logs, report); never raises
        the function's error (read ``.error`` or ``.result``)."""
        fut = self._call(args, kwargs, raise_first=False)
        if isinstance(fut.exception(), (errors.ServerError, errors.Throttled)) and fut._request_id is None:
            raise fut.exception()
        return Invocation._from_future(fut)

    def invoke_async(self, event) -> Invocation:
        """Lambda's ``Event`` invocation: returns once the server has the JSON ``event`` on disk
        (status ``queued``); retried on failure per ``retries``; ``inv.wait()``, ``inv.attempts``."""
        return events.invoke_async(self.connection, self.name, self.deploy(), [event])[0]

    def invoke_async_many(self, batch) -> list[Invocation]:
        """Many events, accepted in one request and one store transaction."""
        return events.invoke_async(self.connection, self.name, self.deploy(), list(batch))

    def schedule(self, expression: str) -> "triggers.Trigger":
        """Run on a schedule: ``rate(5 minutes)`` (also ``rate(N seconds)`` here) or EventBridge's
        ``cron(0 12 * * ? *)`` (UTC); each firing is an async invocation with a Scheduled Event."""
        self.deploy()
        return triggers.create(self.connection, "schedule", self.name, {"expression": expression})

    def url(self, auth: str = "token") -> "triggers.Trigger":
        """A function URL (``.url`` is the address): any HTTP request on it invokes the function with
        API Gateway's payload 2.0 event.  ``auth="token"`` needs the server's token as a Bearer
        header (never passed to the function); ``auth="none"`` is open on the server's address."""
        self.deploy()
        return triggers.create(self.connection, "url", self.name, {"auth": auth})

    def on_file(self, path, pattern: str = "*", events=("created",), recursive: bool = True) -> "triggers.Trigger":
        """Run when a file matching ``pattern`` under the directory ``path`` is created (and, if
        ``events`` says so, ``"modified"`` or ``"deleted"``): an async invocation with an S3
        event (bucket = the directory's name, key = the URL-encoded relative path, size, eTag =
        MD5).  A file being written is reported once, when it is complete."""
        self.deploy()
        return triggers.create(self.connection, "file", self.name,
                               {"path": os.path.abspath(os.fspath(path)), "pattern": pattern,
                                "events": [events] if isinstance(events, str) else list(events),
                                "recursive": recursive})

    def subscribe(self, queue, batch_size: int = 10, batch_window: float = 0.0,
                  report_batch_item_failures: bool = True, max_receive_count: int = 3) -> "triggers.Trigger":
        """Process ``queue`` (a ``faas.queue(...)`` or its name) in batches of SQS-shaped records,
        at least once each.  A returned ``{"batchItemFailures": [{"itemIdentifier": id}]}`` sends
        back only those; an error sends back the whole batch; a message received
        ``max_receive_count`` times goes to ``queue.dead_letter_queue``."""
        self.deploy()
        return triggers.create(self.connection, "queue", self.name,
                               {"queue": getattr(queue, "name", queue), "batch_size": batch_size,
                                "batch_window": batch_window,
                                "report_batch_item_failures": report_batch_item_failures,
                                "max_receive_count": max_receive_count})

    def _call(self, args: tuple, kwargs: dict, raise_first: bool) -> InvocationFuture:
        """One sync call, waited for by this thread (over the direct socket when it can)."""
        version = self.deploy()
        conn = self.connection
        payload = dumps_call(args, kwargs, self.name, conn.buffer_dir, conn.max_payload_bytes)
        fut = InvocationFuture(self.name, conn)
        fut.input_summary = _summary(args, kwargs)
        return self._follow(fut, raise_first, lambda: conn.call(fut, self.name, payload, logs=True,
                                                                version=version))

    def _follow(self, fut: InvocationFuture, raise_first: bool, start=None) -> InvocationFuture:
        """Wait for one call with its live view; Ctrl-C at any point cancels it.  A plain call
        (``raise_first``) too short for its view prints its handler's lines as it ends; an
        ``invoke()`` returns them in its record instead."""
        view = None
        try:
            view = CallView(fut, self.show, echo=raise_first)
            if start is not None:
                start()
            _wait([fut], raise_first=raise_first)
        except BaseException:
            _cancel([fut])
            raise
        finally:
            if view is not None:
                view.close()
        return fut

    def map(self, *iterables, concurrency: int | None = None, return_exceptions: bool = False,
            show: bool | None = None) -> list:
        """``[f(*xs) for xs in zip(*iterables)]``, in input order, run in parallel.

        Every item is its own invocation.  Items queue on the server (never throttled);
        ``concurrency`` caps how many run at once (the server keeps the cap, so all items are
        recorded at once and queued ones run the moment a slot frees).  The first failure is raised, naming
        the item's index, after cancelling what is still queued or running; with
        ``return_exceptions=True`` every item runs and failures come back in place.
        A progress view shows while it runs (``show=False`` turns it off).
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame
        try:
            return self._map(zip(*iterables), _length(iterables), concurrency, return_exceptions, show)
        except Exception as exc:
            if _trim(exc):
                raise exc.with_traceback(None)  # its cause (the remote traceback) stays
            raise

    def starmap(self, iterable, concurrency: int | None = None, return_exceptions: bool = False,
                show: bool | None = None) -> list:
        """Like :meth:`map` with each item a tuple of arguments."""
        return self._map((tuple(a) for a in iterable), _length([iterable]), concurrency,
                         return_exceptions, show, kind="starmap")

    def _submit_item(self, args: tuple, index: int, view) -> InvocationFuture:
        return self._submit_items([(index, args)], view)[0]

    def _submit_items(self, indexed_args, view, group: tuple | None = None,
                      leased=None) -> list[InvocationFuture]:
        """Pickle every item first (an unpicklable one sends nothing), then send them together
        (through ``leased``, a :class:`.leased_map.LeasedMap`, when the map has one)."""
        version = self.deploy()
        conn = self.connection
        items = []
        for index, args in indexed_args:
            payload = dumps_call(args, {}, self.name, conn.buffer_dir, conn.max_payload_bytes)
            fut = InvocationFuture(self.name, conn)
            fut.index = index
            fut.input_summary = _summary(args, {})
            items.append((fut, payload))
        for fut, _ in items:
            view.add(fut)
        if leased is not None:
            leased.submit(items)
        else:
            conn.submit_many(items, self.name, queue=True, logs=True, version=version, group=group)
        return [fut for fut, _ in items]

    def _map(self, arg_tuples, total, concurrency, return_exceptions, show, kind: str = "map") -> list:
        _check_window("concurrency", concurrency)
        self.deploy()
        futures: list[InvocationFuture] = []
        view = MapView(self.name, total, lambda: _cancel(futures, wait=False), show, kind=kind)
        # ``concurrency`` is kept by the server: every item is sent (and recorded) at once, and
        # the server starts the next the moment one ends, with no round trip to this kernel.
        group = (uuid.uuid4().hex, concurrency) if concurrency else None
        # On this machine, through environments leased to this kernel (leased_map.py)
        leased = self.connection.leased_map(self.name, self.deploy(), concurrency, total, group)
        try:
            numbered = enumerate(arg_tuples)
            # A small first chunk: the server starts work while the rest is still being pickled.
            size = max(FIRST_CHUNK, concurrency or 0)
            while chunk := list(itertools.islice(numbered, min(size, SUBMIT_CHUNK))):
                _check_cancelled(view)
                futures.extend(self._submit_items(chunk, view, group, leased))
                size = SUBMIT_CHUNK
            if leased is not None:
                leased.finish()
            _wait(futures, raise_first=not return_exceptions)
            if leased is not None:
                leased.join()  # its leases kept for the next map before this one returns
            _check_cancelled(view)
        except BaseException:
            if leased is not None:
                leased.finish()
            _cancel(futures)
            raise
        finally:
            view.close()
            if leased is not None:
                self.connection.leased_maps.discard(leased)
        return [f.exception() or f.result() if return_exceptions else f.result() for f in futures]

    def imap(self, *iterables, max_outstanding: int = 64, ordered: bool = True,
             return_exceptions: bool = False, show: bool | None = None):
        """Lazily yield ``f(*xs)`` for ``xs`` in ``zip(*iterables)``, which may be infinite.

        At most ``max_outstanding`` items are submitted and not yet yielded (back-pressure:
        the input is read only as results are consumed).  Results come in input order, or
        as they finish with ``ordered=False``.  A failure is raised at its turn (after
        cancelling what is outstanding) unless ``return_exceptions=True``.  Stopping early
        (``break``) cancels what is outstanding.
        """
        _check_window("max_outstanding", max_outstanding)
        self.deploy()
        return self._imap(zip(*iterables), _length(iterables), max_outstanding, ordered,
                          return_exceptions, show)

    def _imap(self, arg_tuples, total, max_outstanding, ordered, return_exceptions, show):
        futures: list[InvocationFuture] = []
        outstanding: "collections.deque[InvocationFuture]" = collections.deque()
        view = MapView(self.name, total, lambda: _cancel(list(outstanding), wait=False), show,
                       kind="imap")
        exhausted = False
        try:
            while True:
                while not exhausted and len(outstanding) < max_outstanding:
                    args = next(arg_tuples, _END)
                    if args is _END:
                        exhausted = True
                        break
                    _check_cancelled(view)
                    fut = self._submit_item(args, len(futures), view)
                    futures.append(fut)
                    outstanding.append(fut)
                if not outstanding:
                    return
                if ordered:
                    fut = outstanding[0]
                    waiting.wait([fut])
                else:
                    done, _ = waiting.wait(outstanding, return_when=concurrent.futures.FIRST_COMPLETED)
                    fut = min(done, key=lambda f: f.index)
                outstanding.remove(fut)
                _check_cancelled(view)
                exc = fut.exception()
                if exc is not None and not return_exceptions:
                    _raise_first_failure([fut], index=fut.index)
                yield exc if exc is not None else fut.result()
        except BaseException:  # includes GeneratorExit when the consumer stops early
            _cancel(list(outstanding))
            raise
        finally:
            view.close()


class _Deployed(typing.NamedTuple):
    """What was deployed last: to which server, the pickle's hash, its version, what it read."""

    connection: object
    sha256: str
    version: int
    snapshot: dependencies.Snapshot


_END = object()
#: ``map`` pickles and sends this many items at a time
SUBMIT_CHUNK = 500
#: … but the first chunk is this small (or ``concurrency`` items), so the first items start early
FIRST_CHUNK = 32


#: types whose ``repr`` is already short (reprlib's lookup costs a map item a microsecond)
_SHORT_REPR = frozenset({type(None), bool, int, float})


def _summary(args: tuple, kwargs: dict, limit: int = 200) -> str:
    parts = [repr(a) if type(a) in _SHORT_REPR and (type(a) is not int or -10**12 < a < 10**12)
             else reprlib.repr(a) for a in args]
    parts += [f"{k}={reprlib.repr(v)}" for k, v in kwargs.items()]
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _length(iterables) -> int | None:
    try:
        return min(len(it) for it in iterables) if iterables else 0
    except TypeError:
        return None


def _check_window(name: str, value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise errors.InvalidParameter(f"{name}={value!r}: give a whole number >= 1")


def _check_cancelled(view) -> None:
    if view.cancelled:
        raise errors.Cancelled(f"{view.progress.function}.map was cancelled from its Cancel button; "
                               f"queued items were dropped and running ones killed")


def _trim(exc: Exception) -> bool:
    """Should ``exc`` be raised again without the frames it crossed inside this library?  Yes
    when it is the function's own error (its remote traceback is its cause) or one of ours
    (what happened is in its message): the user sees their call, then the remote traceback.
    Anything else (a bug here) keeps its frames."""
    return isinstance(exc, errors.FaaSError) or isinstance(exc.__cause__, RemoteTraceback)


def _raise_first_failure(futures, index: int | None = None) -> None:
    """Raise the first item's failure, preferring a real one to the ``Cancelled`` of an item the
    map itself cancelled because of it (which may end first)."""
    failed = [(i, f) for i, f in enumerate(futures)
              if f.done() and not f.cancelled() and f.exception() is not None]
    real = [(i, f) for i, f in failed if not isinstance(f.exception(), errors.Cancelled)]
    for i, f in (real or failed)[:1]:
        exc = f.exception()
        i = f.index if f.index is not None else i
        if len(futures) > 1 or index is not None:
            if hasattr(exc, "details"):
                exc.details["index"] = i
            if not any(n.startswith("map item") for n in getattr(exc, "__notes__", ())):
                exc.add_note(f"map item {i} failed (request {f._request_id})")
        raise exc


def _cancel(futures, wait: bool = True) -> None:
    live = [f for f in futures if not f.done()]
    by_map: dict = {}
    for f in live:
        if getattr(f, "_leased", None) is not None:
            by_map.setdefault(id(f._leased), (f._leased, []))[1].append(f)
    for leased_map, mine in by_map.values():
        leased_map.cancel_many(mine)  # its driver cancels them (they have no request id to wait for)
    leased = [f for f in live if getattr(f, "_leased", None) is not None]
    if leased and wait:
        waiting.wait(leased, timeout=30)
    live = [f for f in live if getattr(f, "_leased", None) is None]
    if live:  # not sent yet: never sent (one pass, not a wait for each one's request id)
        for f in live[0]._connection.withdraw_many(live):
            f._finish_cancelled(errors.Cancelled(f"{f.function}: cancelled before it was sent; it never ran"))
        live = [f for f in live if not f.done()]
    # A future still being submitted gets its request id in a moment (its batch is in flight);
    # skipping it would leave it to run unobserved.
    rids = [rid for rid in (f.request_id for f in live) if rid]
    if rids:
        try:
            live[0]._connection.cancel(rids)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        if wait:
            waiting.wait(live, timeout=30)


class _Latch:
    """Set when every future has ended, or (``stop_on_failure``) the first one failed.

    One done callback per future, instead of ``concurrent.futures.wait``'s waiter put on
    (and taken off) each under its lock: a map's wait is then a few microseconds per item
    cheaper."""

    def __init__(self, futures, stop_on_failure: bool):
        self.left = len(futures)
        self.stop_on_failure = stop_on_failure
        self.event = threading.Event()
        self._lock = threading.Lock()
        if not futures:
            self.event.set()
        for fut in futures:
            fut.add_observer(on_done=self._done)

    def _done(self, fut) -> None:
        with self._lock:
            self.left -= 1
            left = self.left
        if left == 0 or (self.stop_on_failure and not fut.cancelled() and fut.exception() is not None):
            self.event.set()

    def wait(self) -> None:
        waiting.in_steps(self.event.wait, None)


def _wait(futures, raise_first: bool = True):
    """Wait for all; on the first failure (if raise_first) or Ctrl-C, cancel the rest."""
    try:
        if futures:
            _Latch(futures, stop_on_failure=raise_first).wait()
            done = [f for f in futures if f.done()]
            if raise_first and any(f.exception() is not None for f in done):
                pending = [f for f in futures if not f.done()]
                _cancel(list(pending))
                try:
                    _raise_first_failure(futures)
                except errors.Cancelled:
                    raise
                except Exception as exc:
                    if pending:
                        exc.add_note(f"the map cancelled the {len(pending)} item(s) unfinished "
                                     f"when this one failed (queued or running; one that ended "
                                     f"first kept its result); map(..., return_exceptions=True) "
                                     f"lets every item run and returns failures in place")
                    raise
    except KeyboardInterrupt:
        _cancel(futures)
        raise
    return futures


def _check_show(show):
    if show is not None and not isinstance(show, bool):
        raise errors.InvalidParameter(f"show={show!r} is invalid: give True, False or None")
    return show


def default_name(fn) -> str:
    """The name a function gets without ``name=``: its ``__name__``, or for a lambda or another
    nameless callable ``lambda_<hash>`` / ``<Type>_<hash>``, the hash of its code (stable across
    kernels: the file name and line are left out)."""
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and limits.NAME_RE.match(name):
        return name
    code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)
    if name == "<lambda>":
        stem = "lambda"
    else:
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", name if isinstance(name, str) else type(fn).__name__)
        stem = stem.strip("_")[:48] or "function"
    if isinstance(code, types.CodeType):
        data = marshal.dumps(_essence(code), 2)  # version 2: no refs, so deterministic
    else:
        data = f"{type(fn).__module__}.{type(fn).__qualname__}".encode()
    return f"{stem}_{hashlib.sha256(data).hexdigest()[:8]}"


def _essence(code: types.CodeType) -> tuple:
    """What the code does, without where it is (file, lines, columns)."""
    consts = tuple(_essence(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_argcount, code.co_kwonlyargcount, code.co_flags)


def function(fn=None, *, name: str | None = None, memory: int | None = None,
             timeout: float | None = None, env: dict | None = None,
             concurrency: int | None = None, show: bool | None = None, retries: int | None = None,
             retry_delay: float | None = None, max_event_age: int | None = None,
             on_success=None, on_failure=None, init=None, snapshot: bool | None = None,
             layers: list | None = None, backend: str | None = None, **unknown):
    """Make ``fn`` a function that runs in isolated execution environments.

    ``memory`` in MB (128..10240, default 128), ``timeout`` in seconds (1..900, default 3),
    ``env`` environment variables, ``concurrency`` reserved concurrent executions, ``layers``
    published layer versions (``["mylayer:1", ...]``, at most 5; their ``python/`` joins
    ``sys.path`` before the function loads), ``backend`` where it runs (``"local"`` or
    ``"dask"``; None: the server's default).  ``show``:
    a call shows a live view (status, logs as printed, REPORT) once it runs longer than a
    second, and a shorter one prints its handler's lines as it ends; ``True`` shows a view for
    every call, ``False`` nothing.  Options are keyword-only.

    ``name`` defaults to ``fn.__name__``; a lambda or a nameless callable gets
    ``lambda_<code hash>`` (see :func:`default_name`).  Wrapping a :class:`RemoteFunction`
    again applies the options given and keeps its others.  Every bad option is named in one
    :class:`~jupyter_faas.InvalidParameter`.

    Asynchronous invocation (``invoke_async``, triggers): ``retries`` (0..10, default 2),
    ``retry_delay`` (s before the first retry, doubling; default 1.0), ``max_event_age``
    (60..21600 s), ``on_success`` / ``on_failure`` destinations (a handle or function name,
    or a directory path).

    INIT: ``init`` is called once per execution environment before its first invocation, in
    the same globals as ``fn`` (a ``global model`` it assigns is what ``fn`` reads).  Cold
    starts of a function with INIT fork from a snapshot taken after it (copy-on-write);
    ``snapshot=False`` opts out, ``snapshot=True`` opts a function without ``init`` in.
    """
    if unknown:
        raise errors.InvalidParameter(_unknown_options(unknown))
    def wrap(f):
        return RemoteFunction(f, name=name, memory=memory, timeout=timeout, env=env,
                              concurrency=concurrency, show=show, retries=retries,
                              retry_delay=retry_delay, max_event_age=max_event_age,
                              on_success=on_success, on_failure=on_failure, init=init,
                              snapshot=snapshot, layers=layers, backend=backend)
    if fn is None:
        return wrap
    if not callable(fn):
        raise errors.InvalidParameter(
            f"faas.function got {fn!r} as its first argument; options are keyword-only: "
            f"@faas.function(memory=256, timeout=10)")
    return wrap(fn)


def _unknown_options(unknown: dict) -> str:
    """``bogus=`` and ``memroy=`` named, with the option each one probably meant."""
    import difflib
    import inspect
    known = [p for p in inspect.signature(function).parameters if p not in ("fn", "unknown")]
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(key, known, n=1)
        parts.append(f"{key}=" + (f" (did you mean {near[0]}=?)" if near else ""))
    return (f"faas.function got {len(unknown)} unknown option{'s' if len(unknown) > 1 else ''}: "
            f"{', '.join(parts)}; its options are {', '.join(k + '=' for k in known)}")
