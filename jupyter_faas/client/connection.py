"""The client's connection to one FaaS server: REST calls and the invocation websocket.

Finding the server (or starting it) is :mod:`.discovery`; what the server's frames do to
futures is :mod:`.dispatch`, shared with the direct socket (:mod:`.direct`).

All network I/O runs on one daemon thread with its own asyncio loop (started on first
use), so a blocking call in a notebook never blocks (or needs) the kernel's own loop.
Control calls are REST; invocations go over one websocket, multiplexed.  See
:mod:`.threads` for what may run on that thread.

A forked child gets its own loop, thread, websocket and direct sockets on first use,
never the parent's (``os.register_at_fork``): the parent's sockets are shared file
descriptions, so a child reading them would take the parent's answers.

A client on the server's machine shares its buffer directory (it proves so by
reading back the instance nonce the status endpoint reports): large arguments and
results then pass through files there, not through the websocket.  Any other
client sends and receives every byte in its messages.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import threading
import time
import urllib.parse
import weakref
from pathlib import Path

from tornado import httpclient, websocket

from kernel_workers import buffers, wire

from .. import errors
from . import threads, waiting
from .direct import DirectPool, DirectUnavailable
from .dispatch import Dispatcher
from .lease import DirectBroke
from .leased_map import LeasedMap
from .serialization import Payload, too_large

log = logging.getLogger("jupyter_faas.client")
#: an ``invoke`` frame carries at most this many items / payload bytes
BATCH_ITEMS = 1000
BATCH_BYTES = 8 << 20
#: a ``cancel`` or ``watch`` frame names at most this many request ids (about 400 KB of header)
CANCEL_BATCH = 10_000
#: leases a map asks for first when it sets no ``concurrency`` (the server starts what it lacks;
#: the map takes more while its items mostly wait: leased_map.GROW_MIN_MS)
MAP_LEASES = max(2, os.cpu_count() or 1)
#: how long a client keeps trying to reconnect to re-attach its accepted invocations
REATTACH_S = 60.0
#: after a drop, how long a client waits for someone else to restart the server before it
#: starts one itself (a client that did not see its server go starts one at once, as a first
#: call does)
RESTART_GRACE_S = 5.0
#: a call sent again at most this many times to the next server when the one it found is gone
NEXT_SERVER_TRIES = 3
#: every Connection of this process, so a forked child can give each its own sockets
_connections: "weakref.WeakSet[Connection]" = weakref.WeakSet()
#: what a forked child inherited and must neither use nor close through its loop (kept, so
#: no finaliser runs: the parent's epoll set is shared with the child)
_inherited: list = []


class Connection:
    """One server: REST calls and the invocation websocket.

    ``share_files=False`` never uses the server's buffer directory, as a client on
    another machine could not (every byte then travels in messages).
    """

    def __init__(self, url: str, token: str, *, share_files: bool = True,
                 address_from: str | None = None):
        self.url = url.rstrip("/")
        self.token = token
        self._cid = itertools.count(1)
        self._closing = False
        # (start) -> (url, token) of the server to go to when this one is gone (a restart moves
        # it), or None; connect() sets it when it found the server, rather than being given it
        self.rediscover = None
        #: how this connection was given its address, when it was (it then never looks for
        #: another server): connect() sets it, and the error of a gone server says it
        self.address_from = address_from
        self.share_files = share_files
        self.buffer_dir: Path | None = None  # the server's buffer directory, when shared
        self._buffer_nonce = None
        self._direct: DirectPool | None = None
        #: maps running through leased environments (their unsent items can be withdrawn)
        self.leased_maps: set = set()
        #: False: every call and map goes through the server, never a leased environment (the
        #: server's own path, e.g. to compare or debug it); the server's ``leases`` option is
        #: the same switch for every client
        self.use_leases = True
        self._process_state()
        _connections.add(self)
        self._learn(self.request("GET", "/faas/api/status"))

    def _process_state(self) -> None:
        """What belongs to this process alone: the IO thread and loop, sockets, pending calls."""
        self._loop: asyncio.AbstractEventLoop | None = None  # made, with its thread, on first use
        self._thread: threading.Thread | None = None
        self._io_lock = threading.Lock()
        self._ws = None
        self._ws_lock = None
        self._http = None
        self._connected = False
        self._dispatcher = Dispatcher(cancel=self._cancel_accepted)
        self._outbox: list = []
        self._outbox_lock = threading.Lock()
        self._outbox_scheduled = False
        self._last_submitted = None  # the newest future sent over the websocket
        self._tasks: set = set()     # tasks of the IO loop, kept until done (the loop keeps weak refs)
        self._lost_at: float | None = None  # when this client saw its server go (time.monotonic)
        self._server_gen = 0         # moves each time the connection moves to the next server
        self._find_lock = None       # one search for the next server at a time (_next_server)

    def _after_fork_in_child(self) -> None:
        """In a forked child: leave the parent's thread, loop and sockets, and start afresh.

        Only the forking thread survives a fork, and every socket here is shared with the
        parent: a child using them would read the parent's answers (and the parent the
        child's), and closing them through the loop would unregister the parent's sockets
        from the epoll set the two share.  So the child keeps those objects untouched,
        closes its own descriptors of the sockets, and fails its copies of the parent's
        pending futures (the parent follows them).  The next call makes new ones.
        """
        pending = (list(self._dispatcher.awaiting.values()) + list(self._dispatcher.following.values())
                   + [fut for _, fut, _, _ in self._outbox])
        ws_socket = getattr(getattr(getattr(self._ws, "protocol", None), "stream", None), "socket", None)
        _close_inherited(ws_socket)
        if self._direct is not None:
            for channel in self._direct._free:
                _close_inherited(channel.sock)
            self._direct = DirectPool(self._direct.path, self.token, self._direct.instance,
                                      self._direct.buffer_nonce)
        _inherited.append((self._loop, self._thread, self._ws, self._http, self._tasks))
        self._process_state()
        for fut in pending:
            fut._orphaned_by_fork()

    def _io_loop(self) -> asyncio.AbstractEventLoop:
        """The IO thread's loop, started on first use."""
        loop = self._loop
        if loop is None:
            with self._io_lock:
                loop = self._loop
                if loop is None:
                    loop = asyncio.new_event_loop()
                    self._thread = threading.Thread(target=_run_io_loop, args=(loop,),
                                                    name="jupyter_faas-io", daemon=True)
                    self._thread.start()
                    self._loop = loop
        return loop

    def _start(self, coro) -> None:
        """Run ``coro`` as a task of the IO loop (call on the IO thread), owned until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _learn(self, status: dict) -> None:
        """What the server's status says about how to reach it: limits, shared files, direct socket."""
        self.status = status
        self.max_payload_bytes = status.get("max_payload_bytes", 6 * 1024 * 1024)
        info = status.get("buffers") if self.share_files else None
        self.buffer_dir = _shared_buffer_dir(info)
        self._buffer_nonce = info["nonce"] if self.buffer_dir is not None else None
        old, self._direct = self._direct, None
        if old is not None:
            old.close()
        path = status.get("direct_socket")
        # Only a server on this machine has its socket here (and the hello proves it is this one).
        if path and os.environ.get("JUPYTER_FAAS_DIRECT", "1") != "0" and os.path.exists(path):
            self._direct = DirectPool(path, self.token, status.get("instance"), self._buffer_nonce)

    # ---- plumbing --------------------------------------------------------------------------

    def run(self, coro, timeout: float | None = None):
        """Run a coroutine on the IO thread and wait for it (Ctrl-C, or an interrupt_main(),
        interrupts the wait; the coroutine runs on).

        Raises :class:`~jupyter_faas.errors.FaaSError` at once when called on the IO thread
        itself, which could never answer.
        """
        if threads.on_io_thread():
            coro.close()
            threads.check_may_block("a jupyter_faas call that waits for the server")
        fut = asyncio.run_coroutine_threadsafe(coro, self._io_loop())
        waiting.wait([fut], timeout)
        return fut.result(0)

    def request(self, method: str, path: str, body=None, params: dict | None = None,
                raw: bool = False, timeout: float = 120):
        return self.run(self._request(method, path, body, params, raw, timeout))

    async def _request(self, method, path, body, params, raw, timeout):
        for tries in range(1, NEXT_SERVER_TRIES + 1):
            gen = self._server_gen
            try:
                return await self._fetch(self.url, self.token, method, path, body, params, raw, timeout)
            except ConnectionRefusedError as exc:
                # Nothing reached a server: the request may go to the next one (found or started).
                if tries == NEXT_SERVER_TRIES:
                    raise errors.ServerError(self._not_answering(exc)) from exc
                await self._next_server(gen, exc)
            except OSError as exc:  # it may have reached the server: not sent again
                raise errors.ServerError(self._not_answering(exc)) from exc

    async def _fetch(self, base: str, token: str, method, path, body=None, params=None, raw=False,
                     timeout=30):
        """One REST call to the server at ``base``; raises OSError when it cannot be reached."""
        if self._http is None:
            self._http = httpclient.AsyncHTTPClient(max_body_size=512 * 1024 * 1024)
        url = base + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = httpclient.HTTPRequest(url, method=method, body=data, request_timeout=timeout,
                                     headers={"Authorization": f"token {token}"},
                                     allow_nonstandard_methods=True)
        resp = await self._http.fetch(req, raise_error=False)
        if resp.code == 599:
            raise errors.ServerError(f"cannot reach the FaaS server at {base}: {resp.error}")
        if resp.code >= 400:
            try:
                info = json.loads(resp.body)
            except ValueError:
                info = {"errorType": "ServiceException", "message": resp.body.decode(errors="replace")}
            cls = errors.class_for(info.get("errorType", "")) if resp.code != 403 else errors.ServerError
            if cls is errors.FunctionError:
                cls = errors.ServerError
            raise cls(info.get("message", f"HTTP {resp.code}"))
        if raw:
            return resp
        return json.loads(resp.body) if resp.body else None

    async def _websocket(self):
        """The open websocket, opened (to the next server, if this one is gone) if need be."""
        if self._ws_lock is None:
            self._ws_lock = asyncio.Lock()
        async with self._ws_lock:
            if self._ws is None:
                for tries in range(1, NEXT_SERVER_TRIES + 1):
                    gen = self._server_gen
                    try:
                        self._ws = await self._open_websocket()
                        break
                    except OSError as exc:  # nothing was sent on it: the next server may take it
                        if tries == NEXT_SERVER_TRIES:
                            raise errors.ServerError(self._not_answering(exc)) from exc
                        await self._next_server(gen, exc)
                self._connected = True
                self._lost_at = None
                # Small frames must not wait for Nagle's algorithm (40 ms per round trip).
                self._ws.protocol.stream.set_nodelay(True)
                self._start(self._read(self._ws))
            return self._ws

    async def _open_websocket(self):
        """A websocket to ``self.url``; OSError when the server does not answer."""
        if self._connected:
            # A reconnect, maybe to a restarted server: share its directory only if it still is.
            try:
                self._learn(await self._fetch(self.url, self.token, "GET", "/faas/api/status"))
            except (errors.FaaSError, OSError):
                pass  # the websocket connect below fails and says why
        ws_url = "ws" + self.url[4:] + "/faas/api/ws"
        if self._buffer_nonce is not None:
            ws_url += "?" + urllib.parse.urlencode({"buffers": self._buffer_nonce})
        req = httpclient.HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"})
        return await websocket.websocket_connect(
            req, max_message_size=max(64 << 20, 2 * self.max_payload_bytes + (1 << 20)))

    def server_lost(self) -> None:
        """A socket to the server broke: the next server is waited for (RESTART_GRACE_S from
        now) before this client starts one (see _next_server)."""
        if self._lost_at is None:
            self._lost_at = time.monotonic()

    async def _next_server(self, gen: int, cause: BaseException) -> None:
        """The server at ``self.url`` did not answer (``cause``): move this connection to the next.

        Found through the runtime file (``rediscover``), as a first call finds it: the server it
        names once that one answers; else one this client starts, RESTART_GRACE_S after it first
        saw its server gone (whoever stopped it may be starting the next).  A start that fails (the stopping server
        still holds the store) is tried again.  ``gen``: the server the caller tried; if the
        connection has moved on since, it returns at once.

        Raises :class:`~jupyter_faas.errors.ServerError` at once for a connection given its
        address (it never looks for another), and when no server answered within REATTACH_S.
        """
        if self.rediscover is None:
            raise errors.ServerError(self._not_answering(cause)) from cause
        if self._find_lock is None:
            self._find_lock = asyncio.Lock()
        async with self._find_lock:
            if self._server_gen != gen:
                return  # another call found the next server while this one waited
            loop = asyncio.get_running_loop()
            now = time.monotonic()
            # the grace counts from the first sign of the loss, seen here or by a socket: a refusal
            # may come before the websocket's close is read, while whoever stopped the server
            # is starting the next (a start of ours then races theirs for the store)
            if self._lost_at is None:
                self._lost_at = now
            lost_at = self._lost_at
            deadline = now + REATTACH_S
            gone, last = self.url, cause
            while not self._closing:
                start = time.monotonic() - lost_at >= RESTART_GRACE_S
                try:
                    # starting one takes seconds: off this loop, which every call shares
                    found = await loop.run_in_executor(None, self.rediscover, start)
                    if found:
                        url, token = found[0].rstrip("/"), found[1]
                        status = await self._fetch(url, token, "GET", "/faas/api/status")
                        self.url, self.token = url, token
                        self._learn(status)
                        self._server_gen += 1
                        self._lost_at = None
                        log.info("the FaaS server at %s is gone; using the one at %s", gone, url)
                        return
                except (errors.FaaSError, OSError) as exc:
                    last = exc
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            raise errors.ServerError(
                f"the FaaS server at {gone} is gone and no other answered within {REATTACH_S:g} s "
                f"(last: {last}); start one with `jupyter faas serve` (its log: "
                f"jupyter_faas-server.log in Jupyter's runtime dir)") from cause

    def _not_answering(self, exc: BaseException) -> str:
        """What to say when the server at ``self.url`` does not answer."""
        if self.address_from is None:
            return (f"cannot reach the FaaS server at {self.url}: {exc}. Is it running? Start it "
                    f"with `jupyter faas serve`.")
        if self.address_from == "JUPYTER_FAAS_URL":
            what = ("start that server again, or unset JUPYTER_FAAS_URL and JUPYTER_FAAS_TOKEN "
                    "and call faas.connect() to use (or start) this user's background server")
        else:
            what = ("start that server again and connect to its new address, or call "
                    "faas.connect() with no arguments to use (or start) this user's background "
                    "server")
        return (f"the FaaS server at {self.url} is not answering ({exc}). This connection was "
                f"given that address ({self.address_from}), so it does not look for another "
                f"server: {what}")

    async def _read(self, ws) -> None:
        try:
            await self._read_messages(ws)
        except Exception:  # noqa: BLE001 - a bad message must not strand every pending future
            log.exception("the FaaS server sent a message this client cannot read; reconnecting")
            ws.close()
        self._connection_lost()

    async def _read_messages(self, ws) -> None:
        while True:
            msg = await ws.read_message()
            if msg is None:
                return
            self._dispatcher.dispatch(*wire.unpack(msg))

    def _cancel_accepted(self, request_ids: list) -> None:
        """The dispatcher's ``cancel``: futures cancelled before the server accepted them."""
        try:
            for frame in id_frames("cancel", request_ids):
                self._ws.write_message(frame, binary=True)
        except websocket.WebSocketClosedError:
            pass  # the futures are re-attached or failed with the connection; cancel() says so

    def _connection_lost(self) -> None:
        self._ws = None
        if not self._closing:
            self.server_lost()
        unsure = list(self._dispatcher.awaiting.values())
        self._dispatcher.awaiting.clear()
        for fut in unsure:
            fut._fail(errors.ServerError(
                f"lost the connection to the FaaS server at {self.url} before it confirmed the "
                f"invocation; it may or may not have been accepted (faas.invocations() lists what "
                f"the server has)"))
        accepted, self._dispatcher.following = self._dispatcher.following, {}
        if accepted and not self._closing:
            self._start(self._reattach(accepted))

    async def _reattach(self, futures: dict) -> None:
        """Reconnect (to a restarted server too) and ``watch`` what was accepted.

        The store outlives the server: a restart re-queues what had not started and
        settles what was running, and ``watch`` tells these futures how each ended.
        """
        self.server_lost()
        deadline = time.monotonic() + REATTACH_S
        while not self._closing:
            try:
                # the next server: the runtime file's, or one this client starts after
                # RESTART_GRACE_S (see _next_server)
                ws = await self._websocket()
                self._dispatcher.following.update(futures)
                for frame in id_frames("watch", futures, logs=True):
                    await ws.write_message(frame, binary=True)
                return
            except Exception:  # noqa: BLE001 - the server may still be starting
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        for rid, fut in futures.items():
            self._dispatcher.following.pop(rid, None)
            fut._fail(errors.ServerError(
                f"lost the connection to the FaaS server at {self.url} and could not reconnect "
                f"within {REATTACH_S:g} s; invocation {rid} may still run: "
                f"faas.Invocation.from_id({rid!r}) finds it once the server is back"))

    # ---- invocations -------------------------------------------------------------------------

    def call(self, future, function: str, payload: Payload, *, encoding: str = "pickle",
             logs: bool = False, version: int | None = None) -> None:
        """A sync call: run it to its end over the direct socket when the server is on this
        machine; else submit it over the websocket (``future`` then ends later, on the IO thread).
        """
        threads.check_may_block("a sync call")
        pool = self._direct
        last = self._last_submitted
        if pool is not None and last is not None and not last.wait_accepted(30):
            pool = None  # keep the order: behind an unconfirmed websocket submission, go the same way
        if pool is not None:
            self._check_size(function, [payload])
            try:
                channel = pool.take()
            except DirectUnavailable:
                self._direct = None  # gone (the server stopped); the websocket path re-attaches
            else:
                try:
                    channel.call(future, function, payload, encoding=encoding, version=version, logs=logs,
                                 lease=self.use_leases)
                except DirectUnavailable:
                    channel.close()  # nothing was sent: the websocket takes the call below
                except DirectBroke as exc:
                    channel.close()
                    self._direct_broke(future)
                    if exc.interrupted is not None:
                        # Ctrl-C came first: the caller cancels the call, now followed again
                        raise exc.interrupted from None
                    return
                except BaseException:
                    channel.close()  # interrupted mid-frame: the socket's state is unknown
                    raise
                else:
                    pool.give_back(channel)
                    return
        self.submit(future, function, payload, encoding=encoding, queue=False, logs=logs,
                    version=version)

    def reattach(self, futures: dict) -> None:
        """Follow ``futures`` (request id -> future) through the websocket, reconnecting to a
        restarted server if need be (see _reattach)."""
        self._io_loop().call_soon_threadsafe(self._start, self._reattach(futures))

    def _direct_broke(self, future) -> None:
        self._direct = None
        self.server_lost()
        rid = future._request_id
        if rid is None:
            future._fail(errors.ServerError(
                f"lost the connection to the FaaS server at {self.url} before it confirmed the "
                f"invocation; it may or may not have been accepted (faas.invocations() lists what "
                f"the server has)"))
            return
        # Accepted: follow it over the websocket, as a websocket call is after a drop.
        self._io_loop().call_soon_threadsafe(self._start, self._reattach({rid: future}))

    def _check_size(self, function: str, payloads: list) -> None:
        for payload in payloads:
            if payload.nbytes > self.max_payload_bytes:
                for p in payloads:
                    p.discard(self.buffer_dir)
                raise too_large(function, payload.nbytes, self.max_payload_bytes)

    def submit(self, future, function: str, payload: "bytes | Payload", *, encoding: str = "pickle",
               queue: bool = False, logs: bool = False, version: int | None = None) -> None:
        """Send an invocation; ``future`` is told when it is accepted, logs, and done.

        Submissions from any thread gather in an outbox that the IO thread drains into
        batched ``invoke`` frames, so a burst (``map``) costs a few frames, not one each.
        """
        self.submit_many([(future, payload)], function, encoding=encoding, queue=queue, logs=logs,
                         version=version)

    def submit_many(self, items, function: str, *, encoding: str = "pickle", queue: bool = False,
                    logs: bool = False, version: int | None = None, group: tuple | None = None,
                    init_failure: str | None = None) -> None:
        """Send several invocations of one function: ``items`` is ``[(future, payload), ...]``.

        A payload is bytes, or a :class:`~.serialization.Payload` whose buffers may be in a file.
        ``init_failure``: the token of an environment the server started for this client's leased
        map and whose INIT failed (``lease_failed``): the item fails with that INIT's error, as
        the one that waited for that environment on the server's path does.
        """
        items = [(fut, p if isinstance(p, Payload) else Payload(p, None, len(p))) for fut, p in items]
        self._check_size(function, [p for _, p in items])
        key = (function, version, encoding, bool(queue), bool(logs), group, init_failure)
        batch = [(next(self._cid), fut, key, payload) for fut, payload in items]
        # A sync call on the direct socket waits until this one is accepted, so calls reach the
        # server in the order they were made (``f.spawn(1); f(2)`` runs 1 first).
        if items:
            self._last_submitted = items[-1][0]
        with self._outbox_lock:
            self._outbox.extend(batch)
            if self._outbox_scheduled:
                return
            self._outbox_scheduled = True
        self._io_loop().call_soon_threadsafe(self._drain_outbox)

    def leased_map(self, function: str, version, concurrency: int | None, total: int | None,
                   group: tuple | None = None):
        """A started :class:`.leased_map.LeasedMap` for a map of ``total`` items, or None (the
        server is not on this machine, or leases none now: the map goes the server's way)."""
        pool = self._direct
        if pool is None or not self.use_leases or not isinstance(version, int) or (total is not None and total < 2) \
                or self._last_submitted is not None and not self._last_submitted.wait_accepted(30):
            return None
        want = min(total or MAP_LEASES, concurrency or MAP_LEASES)
        # without ``concurrency``, more leases while its items mostly wait (leased_map.GROW_MIN_MS)
        leased = LeasedMap(self, pool, function, version, want, logs=True, group=group,
                           grow=concurrency is None)
        if not leased.start():
            return None
        self.leased_maps.add(leased)
        return leased

    def withdraw(self, future) -> bool:
        """Take ``future`` back if it has not been sent yet; True if it was still waiting to be."""
        for leased in list(self.leased_maps):
            if leased.withdraw(future):
                return True
        with self._outbox_lock:
            for i, item in enumerate(self._outbox):
                if item[1] is future:
                    del self._outbox[i]
                    break
            else:
                return False
        item[3].discard(self.buffer_dir)
        return True

    def withdraw_many(self, futures) -> list:
        """Take back those of ``futures`` not sent to the server yet, in one pass over the
        outbox; returns them (their payloads discarded)."""
        wanted = {id(fut) for fut in futures}
        with self._outbox_lock:
            taken = [item for item in self._outbox if id(item[1]) in wanted]
            if taken:
                self._outbox = [item for item in self._outbox if id(item[1]) not in wanted]
        for item in taken:
            item[3].discard(self.buffer_dir)
        return [item[1] for item in taken]

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            items, self._outbox = self._outbox, []
            self._outbox_scheduled = False
        if not items:
            return  # every one was withdrawn (cancelled before it was sent)
        frames, group, size = [], [], 0

        def close_group():
            function, version, encoding, queue, logs, cap, init_failure = group[0][2]
            extra = {"group": list(cap)} if cap else {}
            if init_failure:
                extra["init_failure"] = init_failure
            frames.append((group, wire.pack_parts(
                "invoke", b"".join(p.data for _, _, _, p in group), function=function, version=version,
                encoding=encoding, queue=queue, logs=logs, **extra,
                items=[[c, len(p.data)] + ([p.buffers] if p.buffers else []) for c, _, _, p in group])))

        for item in items:
            if group and (item[2] != group[0][2] or len(group) >= BATCH_ITEMS
                          or size + len(item[3].data) > BATCH_BYTES):
                close_group()
                group, size = [], 0
            group.append(item)
            size += len(item[3].data)
        if group:
            close_group()
        ws = self._ws
        if ws is not None and len(frames) == 1 and len(frames[0][0]) == 1 and not self._closing:
            # One sync call on an open socket: write it now rather than in a new task on the
            # next loop turn (the warm round trip is the number users feel).
            (group, (prefix, body)), = frames
            (cid, fut, _, _), = group
            self._dispatcher.expect(cid, fut)
            try:
                ws.write_message(prefix + body, binary=True)
                return
            except websocket.WebSocketClosedError:
                self._dispatcher.awaiting.pop(cid, None)  # the task below reconnects or fails it
        self._start(self._send_frames(frames))

    async def _send_frames(self, frames) -> None:
        for group, (prefix, body) in frames:
            try:
                ws = await self._websocket()
                for cid, fut, _, _ in group:
                    self._dispatcher.expect(cid, fut)
                await ws.write_message(prefix + body, binary=True)
            except Exception as exc:  # noqa: BLE001 - every failure reaches the caller
                fut_exc = exc if isinstance(exc, errors.FaaSError) else errors.ServerError(
                    f"could not send the invocation to {self.url}: {exc}")
                for cid, fut, _, payload in group:
                    self._dispatcher.awaiting.pop(cid, None)
                    payload.discard(self.buffer_dir)
                    fut._fail(fut_exc)

    def watch(self, futures: dict, logs: bool = True) -> None:
        """Re-attach: ``futures`` maps request ids to futures told of their logs and end."""
        if not futures:
            return
        frames = id_frames("watch", futures, logs=logs)

        async def send():
            ws = await self._websocket()
            for rid, fut in futures.items():
                self._dispatcher.follow(rid, fut)
            for frame in frames:
                await ws.write_message(frame, binary=True)
        self.run(send(), 30)

    def cancel(self, request_ids: list[str]) -> None:
        """Ask the server to cancel these invocations (it drops queued ones, kills running ones)."""
        frames = id_frames("cancel", request_ids)
        if not frames:
            return

        async def send():
            ws = await self._websocket()
            for frame in frames:
                await ws.write_message(frame, binary=True)
        self.run(send(), 30)

    def close(self) -> None:
        self._closing = True
        if self._direct is not None:
            self._direct.close()
        async def shut():
            if self._ws is not None:
                self._ws.close()
        loop = self._loop
        if loop is None:
            return  # never used in this process
        try:
            self.run(shut(), 5)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        loop.call_soon_threadsafe(loop.stop)


def id_frames(kind: str, request_ids, **fields) -> list[bytes]:
    """``kind`` frames naming ``request_ids``, CANCEL_BATCH at most each: a map's worth of ids
    in one frame (50,000: 2 MB) passed the wire's header cap, and the server refused it whole
    (a Ctrl-C then cancelled nothing; a re-attach followed nothing)."""
    request_ids = list(request_ids)
    return [wire.pack(kind, request_ids=request_ids[i:i + CANCEL_BATCH], **fields)
            for i in range(0, len(request_ids), CANCEL_BATCH)]


def _shared_buffer_dir(info) -> Path | None:
    """The server's buffer directory if this process shares it (reads its nonce back), else None."""
    try:
        directory = Path(info["dir"])
        nonce = (directory / buffers.INSTANCE_FILE).read_text()
        if hmac.compare_digest(nonce, str(info["nonce"])) and os.access(directory, os.W_OK):
            return directory
    except (OSError, KeyError, TypeError, ValueError):
        pass  # another machine, another container, another user: messages carry the data
    return None


def _run_io_loop(loop: asyncio.AbstractEventLoop) -> None:
    threads.mark_io_thread()
    loop.run_forever()


def _close_inherited(sock) -> None:
    """Close this process's descriptor of a socket the parent still uses (never the parent's)."""
    try:
        if sock is not None and sock.fileno() >= 0:
            os.close(sock.detach())
    except OSError:
        pass


def _after_fork_in_child() -> None:
    for conn in list(_connections):
        conn._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
