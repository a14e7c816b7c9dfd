"""``@faas.function`` and the handle it returns: call, local, spawn, map, starmap, invoke.

The function is pickled by value and deployed on first use (or by ``.deploy()``);
the same code and configuration deploy as the same version.  Blocking calls
cancel what they started on Ctrl-C (queued invocations are dropped, running ones
killed) and leave the handle usable.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import itertools

from .. import errors, limits
from .connection import default_connection
from .invocation import Invocation, InvocationFuture
from .serialization import dumps_call, dumps_function


class RemoteFunction:
    def __init__(self, fn, *, name: str | None = None, memory: int = limits.MEMORY_DEFAULT_MB,
                 timeout: float = limits.TIMEOUT_DEFAULT_S, env: dict | None = None,
                 concurrency: int | None = None, connection=None):
        if not callable(fn):
            raise errors.InvalidParameter(f"faas.function wraps a function, not {type(fn).__name__}")
        self._fn = fn
        self.name = limits.check_name(name or getattr(fn, "__name__", ""))
        self.config = limits.check_config(memory, timeout, env, concurrency)
        self._connection = connection
        self._deployed: tuple | None = None  # (connection, code sha256, version)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return (f"<RemoteFunction {self.name} memory={self.config['memory']} "
                f"timeout={self.config['timeout']:g}>")

    @property
    def connection(self):
        return self._connection or default_connection()

    # ---- deploy ------------------------------------------------------------------------------

    def deploy(self) -> int:
        """Deploy (idempotent) and return the version."""
        conn = self.connection
        if self._deployed and self._deployed[0] is conn:
            return self._deployed[2]
        code = dumps_function(self._fn, self.name)
        import base64
        body = {"name": self.name, "code": base64.b64encode(code).decode(), **self.config}
        info = conn.request("POST", "/faas/api/functions", body)
        self._deployed = (conn, hashlib.sha256(code).hexdigest(), info["version"])
        return info["version"]

    @property
    def version(self) -> int:
        return self.deploy()

    # ---- calls -------------------------------------------------------------------------------

    def local(self, *args, **kwargs):
        """Run in this process (for debugging); no limits, no record."""
        return self._fn(*args, **kwargs)

    def _submit(self, payload: bytes, queue: bool, encoding: str = "pickle") -> InvocationFuture:
        version = self.deploy()
        conn = self.connection
        fut = InvocationFuture(self.name, conn, encoding)
        conn.submit(fut, self.name, payload, encoding=encoding, queue=queue, logs=True, version=version)
        return fut

    def spawn(self, *args, **kwargs) -> InvocationFuture:
        """Start one invocation and return its future at once."""
        return self._submit(dumps_call(args, kwargs, self.name), queue=False)

    def __call__(self, *args, **kwargs):
        fut = self.spawn(*args, **kwargs)
        return _wait([fut])[0].result()

    def invoke(self, *args, **kwargs) -> Invocation:
        """Run once and return the :class:`Invocation` (status, result, logs, report); never raises
        the function's error (read ``.error`` or ``.result``)."""
        fut = self.spawn(*args, **kwargs)
        _wait([fut], raise_first=False)
        if isinstance(fut.exception(), (errors.ServerError, errors.Throttled)) and fut._request_id is None:
            raise fut.exception()
        return Invocation._from_future(fut)

    def map(self, *iterables, concurrency: int | None = None) -> list:
        """``[f(*xs) for xs in zip(*iterables)]``, in input order, run in parallel.

        Every item is its own invocation.  Items queue on the server (never throttled);
        ``concurrency`` caps how many are in flight.  The first failure is raised, naming
        the item's index, after cancelling what is still queued or running.
        """
        return self._map((dumps_call(args, {}, self.name) for args in zip(*iterables)), concurrency)

    def starmap(self, iterable, concurrency: int | None = None) -> list:
        """Like :meth:`map` with each item a tuple of arguments."""
        return self._map((dumps_call(tuple(args), {}, self.name) for args in iterable), concurrency)

    def _map(self, payloads, concurrency: int | None) -> list:
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise errors.InvalidParameter(f"concurrency={concurrency!r}: give a whole number >= 1")
        self.deploy()
        futures: list[InvocationFuture] = []
        window = concurrency or 0
        payloads = iter(payloads)
        try:
            if window:
                for payload in itertools.islice(payloads, window):
                    futures.append(self._submit(payload, queue=True))
                for payload in payloads:
                    # keep `window` in flight: wait for one of the outstanding to finish
                    outstanding = [f for f in futures if not f.done()]
                    if len(outstanding) >= window:
                        concurrent.futures.wait(outstanding, return_when=concurrent.futures.FIRST_COMPLETED)
                    _raise_first_failure(futures)
                    futures.append(self._submit(payload, queue=True))
            else:
                futures = [self._submit(p, queue=True) for p in payloads]
            _wait(futures)
        except BaseException:
            _cancel(futures)
            raise
        return [f.result() for f in futures]


def _raise_first_failure(futures) -> None:
    for i, f in enumerate(futures):
        if f.done() and f.exception() is not None:
            exc = f.exception()
            if len(futures) > 1:
                if hasattr(exc, "details"):
                    exc.details["index"] = i
                if not any(n.startswith("map item") for n in getattr(exc, "__notes__", ())):
                    exc.add_note(f"map item {i} failed (request {f._request_id})")
            raise exc


def _cancel(futures) -> None:
    live = [f for f in futures if not f.done()]
    rids = [f._request_id for f in live if f._request_id]
    if rids:
        try:
            live[0]._connection.cancel(rids)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        concurrent.futures.wait(live, timeout=30)


def _wait(futures, raise_first: bool = True):
    """Wait for all; on the first failure (if raise_first) or Ctrl-C, cancel the rest."""
    try:
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_EXCEPTION)
            if raise_first and any(f.exception() is not None for f in done):
                _cancel(list(pending))
                _raise_first_failure(futures)
    except KeyboardInterrupt:
        _cancel(futures)
        raise
    return futures


def function(fn=None, *, name: str | None = None, memory: int = limits.MEMORY_DEFAULT_MB,
             timeout: float = limits.TIMEOUT_DEFAULT_S, env: dict | None = None,
             concurrency: int | None = None):
    """Make ``fn`` a function that runs in isolated execution environments.

    ``memory`` in MB (128..10240), ``timeout`` in seconds (1..900), ``env`` environment
    variables, ``concurrency`` reserved concurrent executions.  Options are keyword-only.
    """
    def wrap(f):
        return RemoteFunction(f, name=name, memory=memory, timeout=timeout, env=env,
                              concurrency=concurrency)
    if fn is None:
        return wrap
    if not callable(fn):
        raise errors.InvalidParameter(
            f"faas.function got {fn!r} as its first argument; options are keyword-only: "
            f"@faas.function(memory=256, timeout=10)")
    return wrap(fn)
