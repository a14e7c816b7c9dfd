"""The zygote: the fork server every local execution environment is forked from.

``ZygoteProcess`` starts ``python -m kernel_workers.zygote`` with a clean
environment (never the server's token), asks it to fork, and hears every exit
status (the zygote is the environments' parent, so only it can ``waitpid``).
It does not know what runs in what it forks: that is :mod:`.environment`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys

from kernel_workers import wire

log = logging.getLogger("jupyter_faas.server")

#: Environment variables the zygote (and so every environment) may inherit from the server.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
                   "SYSTEMROOT", "LD_LIBRARY_PATH")


class EnvironmentDied(Exception):
    """The process (or the zygote) an environment needed is gone."""


class ZygoteProcess:
    def __init__(self, preload: list[str], python: str = sys.executable, learned: list | None = None,
                 budget_mb: float = 0.0, on_preloaded=None):
        self.preload = preload
        self.learned = list(learned or [])   # imported in the background (learned preload)
        self.budget_mb = budget_mb
        self.on_preloaded = on_preloaded     # callable(header) when one was imported (or not)
        self.preloaded: dict[str, str | None] = {}  # learned module -> None, or why it was not
        self.python = python
        self.proc = None
        self.sock = None
        self.decoder = wire.FrameDecoder()
        self.hello: asyncio.Future | None = None
        self.forks: dict[str, asyncio.Future] = {}
        self.exits: dict[int, asyncio.Future] = {}
        self.alive = False

    async def start(self) -> dict:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        environ = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        environ["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [self.python, "-m", "kernel_workers.zygote", "--fd", str(child.fileno()),
             "--preload", ",".join(self.preload), "--learned", ",".join(self.learned),
             "--budget-mb", str(self.budget_mb)],
            pass_fds=[child.fileno()], env=environ, stdin=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.sock = parent
        self.hello = loop.create_future()
        self.alive = True
        loop.add_reader(parent.fileno(), self._readable)
        return await asyncio.wait_for(self.hello, 60)

    def _readable(self) -> None:
        decoder = self.decoder
        target = decoder.get_buffer()
        try:
            got = self.sock.recv_into(target, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            got = 0
        finally:
            del target
        if not got:
            self._died()
            return
        try:
            decoder.buffer_updated(got)
        except wire.ProtocolError as exc:
            log.error("the zygote sent a bad frame (%s); stopping it", exc)
            self.stop()
            return
        frame = decoder.next_frame()
        while frame is not None:
            self._dispatch(frame[0])
            frame = decoder.next_frame()

    def _dispatch(self, header: dict) -> None:
        kind = header["k"]
        if kind == "hello":
            if header.get("failed"):
                log.warning("preload modules failed to import in the zygote: %s", header["failed"])
            if not self.hello.done():
                self.hello.set_result(header)
        elif kind == "forked":
            fut = self.forks.pop(header["env_id"], None)
            if fut and not fut.done():
                fut.set_result(header["pid"])
        elif kind == "preloaded":
            self.preloaded[header["module"]] = None if header["ok"] else header.get("error")
            if self.on_preloaded is not None:
                self.on_preloaded(header)
        elif kind == "exited":
            fut = self.exit_future(header["pid"])
            if not fut.done():
                fut.set_result(header["returncode"])

    def exit_future(self, pid: int) -> asyncio.Future:
        fut = self.exits.get(pid)
        if fut is None:
            fut = self.exits[pid] = asyncio.get_running_loop().create_future()
        return fut

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        for fut in list(self.forks.values()) + list(self.exits.values()):
            if not fut.done():
                fut.set_exception(EnvironmentDied("the zygote process exited"))
        if self.hello and not self.hello.done():
            self.hello.set_exception(EnvironmentDied("the zygote process exited during start"))

    async def fork(self, env_id: str, fields: dict, fds: list[int]) -> int:
        fut = self.forks[env_id] = asyncio.get_running_loop().create_future()
        self.sock.setblocking(True)
        try:
            self.sock.sendall(wire.pack("fork", env_id=env_id, **fields))
            socket.send_fds(self.sock, [b"F"], fds)
        finally:
            self.sock.setblocking(False)
        return await asyncio.wait_for(fut, 30)

    def preload_learned(self, modules: list[str]) -> None:
        """Have the zygote import ``modules`` in the background (learned preload)."""
        if not self.alive or not modules:
            return
        self.sock.setblocking(True)
        try:
            self.sock.sendall(wire.pack("preload", modules=list(modules)))
        finally:
            self.sock.setblocking(False)

    def stop(self) -> None:
        self._died()
        if self.sock is not None:
            self.sock.close()  # the zygote kills its environments when this closes
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

