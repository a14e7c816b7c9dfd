"""Snapshots after INIT: a version's cold starts fork from a process that already ran its INIT.

Lambda's SnapStart runs INIT once and resumes new environments from a snapshot of
memory taken after it.  Here the snapshot is a live process, a *template*::

    zygote --fork--> template T (joins its own cgroup, runs INIT, checks it is fork-safe)
                     T --fork--> environment (own cgroup, restore hooks, no INIT)
                     T --fork--> environment ...

T is an environment forked from the zygote with a fourth descriptor, a link socket,
and ``template`` in its init frame.  After INIT it reports whether it may be forked
(:func:`kernel_workers.init.fork_unsafe`: no thread left running, no socket held, no
``snapshot=False``); if so it closes its control socket and serves forks on the link
with the zygote's own loop (:class:`kernel_workers.zygote.Zygote`), which
:class:`TemplateLink` speaks to as :class:`.zygote.ZygoteProcess` speaks to the zygote.
Environments forked from T share its pages copy-on-write: a model loaded at INIT is in
memory once, not once per environment.

A version uses a template when its configuration says ``snapshot`` (the client sets it
for functions with INIT of their own: a ``%%lambda`` cell, ``init=``).  Concurrent cold
starts of the version wait for the one INIT.  When T is not fork-safe the version falls
back to ordinary cold starts for the server's life, the reason is logged (and kept in
:attr:`Snapshots.refused`, shown by the status endpoint), and T itself stays as a warm
environment of the version.  When INIT fails, every waiting cold start fails with its
error and the next cold start tries again.

Memory: T's pages are charged to T's cgroup (cgroup v1 charges a page to the cgroup of
the process that first touched it), so a forked environment's cgroup, its limit and its
Max Memory Used count what it allocated itself.  Under the watchdog, RSS counts shared
pages in every environment that maps them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from ..base import Outcome, environment_key
from .zygote import ZygoteProcess

log = logging.getLogger("jupyter_faas.server")


class TemplateLink(ZygoteProcess):
    """The server's end of a template's fork link (the zygote's protocol, no process to start)."""

    def __init__(self):
        super().__init__([])

    async def attach(self, sock: socket.socket) -> dict:
        loop = asyncio.get_running_loop()
        self.sock = sock
        sock.setblocking(False)
        self.hello = loop.create_future()
        self.alive = True
        loop.add_reader(sock.fileno(), self._readable)
        return await asyncio.wait_for(self.hello, 10)


class Template:
    """A version's template: its environment object (pid, cgroup, pipes), its link, when used."""

    def __init__(self, env, link: TemplateLink, init_ms: float):
        self.env = env
        self.link = link
        self.init_ms = init_ms
        self.last_used = time.monotonic()
        self.forked = 0

    @property
    def alive(self) -> bool:
        return self.link.alive and self.env.exit is not None and not self.env.exit.done()

    def close(self) -> None:
        self.link.stop()  # the template kills what it forked and exits when its link closes
        self.env.close()


class Snapshots:
    """Templates per version, for :class:`.pool.Pool`."""

    def __init__(self, pool):
        self.pool = pool
        self.templates: dict[tuple, Template] = {}
        self.pending: dict[tuple, asyncio.Future] = {}
        #: versions that fell back to ordinary cold starts, and why
        self.refused: dict[tuple, str] = {}

    def wanted(self, function: dict) -> bool:
        return bool(function.get("snapshot")) and environment_key(function) not in self.refused

    async def template_for(self, env, code: bytes) -> tuple[TemplateLink | None, Outcome | None, float]:
        """The link to fork ``env`` from, or None for an ordinary cold start; or INIT's failure.

        The third value is the INIT time this cold start waited for (the first wave's).  A
        cold start that waited for a template that could not be made is told why (a line
        of its INIT output).
        """
        key = env.key
        template = self.templates.get(key)
        if template is not None and template.alive:
            template.last_used = time.monotonic()
            template.forked += 1
            return template.link, None, 0.0
        if template is not None:
            self.templates.pop(key, None)
            template.close()
        fut = self.pending.get(key)
        if fut is None:
            fut = self.pending[key] = asyncio.get_running_loop().create_future()
            self.pool.spawn(self._make(key, env.function, code, fut))
        result = await asyncio.shield(fut)
        if isinstance(result, Outcome):
            return None, result, 0.0
        if result is None:
            why = self.refused.get(key)
            if why:
                env.orphan_lines.append((time.time(), "platform", f"SNAPSHOT skipped: {why}; cold "
                                         f"starts of this version run INIT"))
            return None, None, 0.0
        result.last_used = time.monotonic()
        result.forked += 1
        waited = result.init_ms if result.forked <= 1 else 0.0
        return result.link, None, waited

    async def _make(self, key: tuple, function: dict, code: bytes, fut: asyncio.Future) -> None:
        from .environment import Environment
        t_env = Environment(self.pool, function)
        self.pool.all[t_env.id] = t_env
        result = None
        try:
            parent, child = socket.socketpair()
            try:
                failure = await t_env.start(code, template_link=child)
            finally:
                child.close()
            if failure is not None:
                parent.close()
                result = failure
                return
            unsafe = t_env.ready_header.get("unsafe")
            if unsafe:
                parent.close()
                self.refused[key] = unsafe
                log.info("%s version %s: no snapshot after INIT, cold starts run INIT (%s)",
                         key[0], key[1], unsafe)
                self.pool.release(t_env)  # it stays, warm: an ordinary environment of the version
                self.pool.changed(key, "snapshot")
                return
            link = TemplateLink()
            await link.attach(parent)
            t_env.state = "template"
            template = Template(t_env, link, t_env.init_ms or 0.0)
            self.templates[key] = template
            result = template
            self.pool.changed(key, "snapshot")
        except Exception as exc:  # noqa: BLE001 - the waiting cold starts fall back
            log.warning("%s version %s: could not make a snapshot (%s); cold starts run INIT",
                        key[0], key[1], exc)
            self.refused[key] = f"the snapshot could not be made: {exc}"
            t_env.close()
            result = None
            self.pool.changed(key, "snapshot")
        finally:
            self.pending.pop(key, None)
            if not fut.done():
                fut.set_result(result)

    def state(self, function: dict) -> dict | None:
        """What :meth:`.base.Backend.snapshot_state` says of ``function``'s engine version (by
        any Lambda version that runs it)."""
        if not function.get("snapshot"):
            return None
        version = (function["name"], function["version"])
        for key, why in self.refused.items():
            if key[:2] == version:
                return {"state": "refused", "reason": why}
        if any(key[:2] == version and t.alive for key, t in self.templates.items()):
            return {"state": "ready", "reason": None}
        if any(key[:2] == version for key in self.pending):
            return {"state": "initializing", "reason": None}
        return {"state": "not yet", "reason": None}

    def init_lines(self, key: tuple) -> list:
        """INIT's output, for the first invocation that runs after it (once)."""
        template = self.templates.get(key)
        if template is None:
            return []
        lines, template.env.orphan_lines = template.env.orphan_lines, []
        return lines

    def reap(self, idle_timeout: float) -> None:
        """Stop templates of versions with no environment left, unused for ``idle_timeout``."""
        now = time.monotonic()
        for key, template in list(self.templates.items()):
            live = any(e.key == key and e.state not in ("dead", "template")
                       for e in self.pool.all.values())
            if not template.alive or (not live and now - template.last_used > idle_timeout):
                self.templates.pop(key, None)
                template.close()

    def stop_function(self, name: str) -> None:
        """The function was deleted or replaced: its templates go once their environments have."""
        for key, template in self.templates.items():
            if key[0] == name:
                template.last_used = float("-inf")

    def stats(self) -> dict:
        return {"templates": len(self.templates),
                "snapshots_refused": {f"{k[0]}:{k[1]}": why for k, why in self.refused.items()}}
