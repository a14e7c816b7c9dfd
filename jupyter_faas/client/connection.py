"""The client's connection to the FaaS server: discovery, autostart, one IO thread.

Discovery order: :func:`connect` (explicit URL and token), then the
``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN`` environment variables, then the
runtime file (0600) in Jupyter's runtime dir; if none answers, a server is
started in the background, detached, shared by every kernel of this user.

All network I/O runs on one daemon thread with its own asyncio loop, so a
blocking call in a notebook never blocks (or needs) the kernel's own loop.
Control calls are REST; invocations go over one websocket, multiplexed.

A client on the server's machine shares its buffer directory (it proves so by
reading back the instance nonce the status endpoint reports): large arguments and
results then pass through files there, not through the websocket.  Any other
client sends and receives every byte in its messages.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import itertools
import logging
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import psutil
from tornado import httpclient, websocket

from kernel_workers import buffers, wire

from .. import errors, paths
from .direct import DirectPool, DirectUnavailable
from .serialization import Payload, too_large

log = logging.getLogger("jupyter_faas.client")
_lock = threading.Lock()
#: an ``invoke`` frame carries at most this many items / payload bytes
BATCH_ITEMS = 1000
BATCH_BYTES = 8 << 20
#: how long a client keeps trying to reconnect to re-attach its accepted invocations
REATTACH_S = 60.0
_default: "Connection | None" = None


class Connection:
    """One server: REST calls and the invocation websocket.

    ``share_files=False`` never uses the server's buffer directory, as a client on
    another machine could not (every byte then travels in messages).
    """

    def __init__(self, url: str, token: str, *, share_files: bool = True):
        self.url = url.rstrip("/")
        self.token = token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jupyter_faas-io", daemon=True)
        self._thread.start()
        self._ws = None
        self._ws_lock = None
        self._cid = itertools.count(1)
        self._awaiting_accept: dict[int, object] = {}
        self._by_request: dict[str, object] = {}
        self._outbox: list = []
        self._outbox_lock = threading.Lock()
        self._outbox_scheduled = False
        self._closing = False
        self.rediscover = False  # set by connect() when the server was found, not given
        self._http = None
        self.share_files = share_files
        self.buffer_dir: Path | None = None  # the server's buffer directory, when shared
        self._buffer_nonce = None
        self._connected = False
        self._direct: DirectPool | None = None
        self._last_submitted = None  # the newest future sent over the websocket
        self._learn(self.request("GET", "/faas/api/status"))

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
        """Run a coroutine on the IO thread and wait for it (Ctrl-C interrupts the wait)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def request(self, method: str, path: str, body=None, params: dict | None = None,
                raw: bool = False, timeout: float = 120):
        return self.run(self._request(method, path, body, params, raw, timeout))

    async def _request(self, method, path, body, params, raw, timeout):
        if self._http is None:
            self._http = httpclient.AsyncHTTPClient(max_body_size=512 * 1024 * 1024)
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = httpclient.HTTPRequest(url, method=method, body=data, request_timeout=timeout,
                                     headers={"Authorization": f"token {self.token}"},
                                     allow_nonstandard_methods=True)
        try:
            resp = await self._http.fetch(req, raise_error=False)
        except OSError as exc:
            raise errors.ServerError(f"cannot reach the FaaS server at {self.url}: {exc}. Is it "
                                     f"running? Start it with `jupyter faas serve`.") from exc
        if resp.code == 599:
            raise errors.ServerError(f"cannot reach the FaaS server at {self.url}: {resp.error}")
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
        if self._ws_lock is None:
            self._ws_lock = asyncio.Lock()
        async with self._ws_lock:
            if self._ws is None:
                if self._connected:
                    # A reconnect, maybe to a restarted server: share its directory only if it still is.
                    try:
                        self._learn(await self._request("GET", "/faas/api/status", None, None, False, 30))
                    except errors.FaaSError:
                        pass  # the websocket connect below fails and says why
                ws_url = "ws" + self.url[4:] + "/faas/api/ws"
                if self._buffer_nonce is not None:
                    ws_url += "?" + urllib.parse.urlencode({"buffers": self._buffer_nonce})
                req = httpclient.HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"})
                try:
                    self._ws = await websocket.websocket_connect(
                        req, max_message_size=max(64 << 20, 2 * self.max_payload_bytes + (1 << 20)))
                except OSError as exc:
                    raise errors.ServerError(f"cannot open the websocket to {self.url}: {exc}") from exc
                self._connected = True
                # Small frames must not wait for Nagle's algorithm (40 ms per round trip).
                self._ws.protocol.stream.set_nodelay(True)
                asyncio.ensure_future(self._read(self._ws))
            return self._ws

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
            header, body = wire.unpack(msg)
            kind = header["k"]
            if kind == "accepted":
                for cid, rid in header["items"]:
                    fut = self._awaiting_accept.pop(cid, None)
                    if fut is not None:
                        self._by_request[rid] = fut
                        fut._accepted(rid, header["version"])
            elif kind == "rejected":
                err = header["error"]
                for cid in header.get("cids") or []:
                    fut = self._awaiting_accept.pop(cid, None)
                    if fut is not None:
                        fut._fail(errors.class_for(err["errorType"])(err["errorMessage"]))
            elif kind == "log":
                skipped = header.get("skipped") or {}
                for rid, lines in header["logs"].items():
                    fut = self._by_request.get(rid)
                    if fut is not None:
                        fut._log_lines(lines, skipped.pop(rid, 0))
                for rid, n in skipped.items():
                    fut = self._by_request.get(rid)
                    if fut is not None:
                        fut._log_lines([], n)
            elif kind == "done":
                offset = 0
                for item in header["items"]:
                    n = item["nbytes"]
                    fut = self._by_request.pop(item["request_id"], None)
                    if fut is not None:
                        if item.get("logs") or item.get("skipped"):
                            fut._log_lines(item.get("logs") or [], item.get("skipped", 0))
                        chunk = body[offset:offset + n]
                        # An item with buffers is unpickled from views of this message (no copy).
                        fut._done(item, chunk if item.get("buffers") else bytes(chunk))
                    offset += n
            elif kind == "unknown":
                for rid in header["request_ids"]:
                    fut = self._by_request.pop(rid, None)
                    if fut is not None:
                        fut._fail(errors.ResourceNotFound(
                            f"the server has no invocation {rid!r} (or it was accepted by a server "
                            f"that stopped before recording its end; list them with faas.invocations())"))

    def _connection_lost(self) -> None:
        self._ws = None
        unsure = list(self._awaiting_accept.values())
        self._awaiting_accept.clear()
        for fut in unsure:
            fut._fail(errors.ServerError(
                f"lost the connection to the FaaS server at {self.url} before it confirmed the "
                f"invocation; it may or may not have been accepted (faas.invocations() lists what "
                f"the server has)"))
        accepted, self._by_request = self._by_request, {}
        if accepted and not self._closing:
            asyncio.ensure_future(self._reattach(accepted))

    async def _reattach(self, futures: dict) -> None:
        """Reconnect (to a restarted server too) and ``watch`` what was accepted.

        The store outlives the server: a restart re-queues what had not started and
        settles what was running, and ``watch`` tells these futures how each ended.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REATTACH_S
        while not self._closing:
            try:
                if self.rediscover:
                    info = paths.read_runtime_file()
                    if info and info.get("url") and info.get("token") and _alive(info):
                        self.url, self.token = info["url"].rstrip("/"), info["token"]
                ws = await self._websocket()
                self._by_request.update(futures)
                await ws.write_message(wire.pack("watch", request_ids=list(futures), logs=True),
                                       binary=True)
                return
            except Exception:  # noqa: BLE001 - the server may still be starting
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0.5)
        for rid, fut in futures.items():
            self._by_request.pop(rid, None)
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
                    channel.call(future, function, payload, encoding=encoding, version=version, logs=logs)
                except DirectUnavailable:
                    channel.close()  # nothing was sent: the websocket takes the call below
                except ConnectionError:
                    channel.close()
                    self._direct_broke(future)
                    return
                except BaseException:
                    channel.close()  # interrupted mid-frame: the socket's state is unknown
                    raise
                else:
                    pool.give_back(channel)
                    return
        self.submit(future, function, payload, encoding=encoding, queue=False, logs=logs,
                    version=version)

    def _direct_broke(self, future) -> None:
        self._direct = None
        rid = future._request_id
        if rid is None:
            future._fail(errors.ServerError(
                f"lost the connection to the FaaS server at {self.url} before it confirmed the "
                f"invocation; it may or may not have been accepted (faas.invocations() lists what "
                f"the server has)"))
            return
        # Accepted: follow it over the websocket, as a websocket call is after a drop.
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._reattach({rid: future})))

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
                    logs: bool = False, version: int | None = None, group: tuple | None = None) -> None:
        """Send several invocations of one function: ``items`` is ``[(future, payload), ...]``.

        A payload is bytes, or a :class:`~.serialization.Payload` whose buffers may be in a file.
        """
        items = [(fut, p if isinstance(p, Payload) else Payload(p, None, len(p))) for fut, p in items]
        self._check_size(function, [p for _, p in items])
        key = (function, version, encoding, bool(queue), bool(logs), group)
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
        self._loop.call_soon_threadsafe(self._drain_outbox)

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            items, self._outbox = self._outbox, []
            self._outbox_scheduled = False
        frames, group, size = [], [], 0

        def close_group():
            function, version, encoding, queue, logs, cap = group[0][2]
            extra = {"group": list(cap)} if cap else {}
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
            self._awaiting_accept[cid] = fut
            try:
                ws.write_message(prefix + body, binary=True)
                return
            except websocket.WebSocketClosedError:
                self._awaiting_accept.pop(cid, None)  # the task below reconnects or fails it
        asyncio.ensure_future(self._send_frames(frames))

    async def _send_frames(self, frames) -> None:
        for group, (prefix, body) in frames:
            try:
                ws = await self._websocket()
                for cid, fut, _, _ in group:
                    self._awaiting_accept[cid] = fut
                await ws.write_message(prefix + body, binary=True)
            except Exception as exc:  # noqa: BLE001 - every failure reaches the caller
                fut_exc = exc if isinstance(exc, errors.FaaSError) else errors.ServerError(
                    f"could not send the invocation to {self.url}: {exc}")
                for cid, fut, _, payload in group:
                    self._awaiting_accept.pop(cid, None)
                    payload.discard(self.buffer_dir)
                    fut._fail(fut_exc)

    def watch(self, futures: dict, logs: bool = True) -> None:
        """Re-attach: ``futures`` maps request ids to futures told of their logs and end."""
        if not futures:
            return
        frame = wire.pack("watch", request_ids=list(futures), logs=logs)

        async def send():
            ws = await self._websocket()
            for rid, fut in futures.items():
                self._by_request[rid] = fut
            await ws.write_message(frame, binary=True)
        self.run(send(), 30)

    def cancel(self, request_ids: list[str]) -> None:
        if not request_ids:
            return
        frame = wire.pack("cancel", request_ids=list(request_ids))

        async def send():
            ws = await self._websocket()
            await ws.write_message(frame, binary=True)
        asyncio.run_coroutine_threadsafe(send(), self._loop).result(30)

    def close(self) -> None:
        self._closing = True
        if self._direct is not None:
            self._direct.close()
        async def shut():
            if self._ws is not None:
                self._ws.close()
        try:
            self.run(shut(), 5)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)


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


def _alive(info: dict) -> bool:
    try:
        # A zombie (a dead server its parent has not reaped) still answers kill(pid, 0).
        return psutil.Process(int(info["pid"])).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def _try(url: str, token: str) -> Connection | None:
    try:
        return Connection(url, token)
    except errors.FaaSError:
        return None


def start_server(timeout: float = 60.0) -> dict:
    """Start a detached server for this user (unless one is already up) and return its info."""
    runtime = paths.runtime_file()
    runtime.parent.mkdir(parents=True, exist_ok=True)
    with open(runtime.parent / "jupyter_faas-start.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        info = paths.read_runtime_file()
        if info and _alive(info):
            return info
        env = {k: v for k, v in os.environ.items()
               if k not in ("JUPYTER_FAAS_URL", "JUPYTER_FAAS_TOKEN")}
        logfile = open(runtime.parent / "jupyter_faas-server.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "jupyter_faas", "serve"], env=env,
                                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = paths.read_runtime_file()
            if info and info.get("pid") == proc.pid:
                # Reap it when it ends, so a long-lived starter (the Jupyter server) keeps
                # no zombie, which would look alive to the next discovery.
                threading.Thread(target=proc.wait, name="jupyter_faas-reaper", daemon=True).start()
                return info
            if proc.poll() is not None:
                raise errors.ServerError(
                    f"the FaaS server exited at start with status {proc.returncode}; see "
                    f"{runtime.parent / 'jupyter_faas-server.log'}")
            time.sleep(0.05)
        raise errors.ServerError(f"the FaaS server did not start within {timeout:g} s; see "
                                 f"{runtime.parent / 'jupyter_faas-server.log'}")


def discover(check=None) -> tuple[str, str]:
    """The URL and token of this user's FaaS server, starting one if none answers.

    ``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN`` first, then the runtime file when its
    process is alive (and ``check(url, token)``, if given, returns something true), else
    a newly started background server. Blocks while a server starts: call it from a
    thread where a loop must not wait (the Jupyter server extension does).
    """
    if os.environ.get("JUPYTER_FAAS_URL"):
        return os.environ["JUPYTER_FAAS_URL"], os.environ.get("JUPYTER_FAAS_TOKEN", "")
    info = paths.read_runtime_file()
    if info and _alive(info) and (check is None or check(info["url"], info["token"])):
        return info["url"], info["token"]
    info = start_server()
    return info["url"], info["token"]


def connect(url: str | None = None, token: str | None = None) -> Connection:
    """Connect to a FaaS server and make it the default for this process.

    With no arguments: ``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN``, then the runtime
    file, then a newly started background server.
    """
    global _default
    with _lock:
        if url is not None:
            conn = Connection(url, token or os.environ.get("JUPYTER_FAAS_TOKEN", ""))
        else:
            tried: list = []  # the runtime file's server, connected while checking it answers
            url, token = discover(check=lambda u, t: tried.append(_try(u, t)) or tried[-1])
            conn = tried[-1] if tried and tried[-1] is not None else Connection(url, token)
            # found through the runtime file: after a restart, look there for the new server
            conn.rediscover = not os.environ.get("JUPYTER_FAAS_URL")
        if _default is not None:
            _default.close()
        _default = conn
        return conn


def default_connection() -> Connection:
    conn = _default
    if conn is None:
        conn = connect()
    return conn


def reset() -> None:
    """Forget the default connection (tests, or after the server was restarted)."""
    global _default
    with _lock:
        if _default is not None:
            _default.close()
        _default = None
