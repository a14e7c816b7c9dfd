"""A fake backend for the engine's unit tests (like httpx's MockTransport): no processes.

Environments are plain objects; a test decides when each INIT and each invocation ends
(:meth:`FakeBackend.finish`), and reads what the engine asked (``runs``, ``cancelled``).
"""

from __future__ import annotations

import asyncio
import itertools

from jupyter_faas.server.backends.base import Backend, Outcome


class FakeEnv:
    _ids = itertools.count(1)

    def __init__(self, function: dict):
        self.id = f"fake-{next(self._ids)}"
        self.function = function
        self.key = (function["name"], function["version"])
        self.state = "starting"
        self.init_ms = 1.0
        self.fresh = True
        self.init_type = "on-demand"
        self.done = None  # the engine's done callback while it runs


class FakeBackend(Backend):
    def __init__(self, *, auto_init: bool = True, warm_wait: float | None = None):
        self.auto_init = auto_init     # INIT ends at once (else a test calls finish_init)
        self.warm_wait = warm_wait     # what wait_for_warm answers
        self.envs: list[FakeEnv] = []
        self.runs: list[tuple] = []    # (env, request_id, payload) in the order sent
        self.cancelled: list[FakeEnv] = []
        self.active: dict = {}         # request_id -> env, while it runs
        self.inits: dict = {}          # env -> future of its INIT
        self.on_run = None             # callable(env, request_id) called as each run is sent

    # ---- what a test does ------------------------------------------------------------------

    def finish(self, request_id: str, kind: str = "result", body: bytes = b"ok", **fields) -> None:
        """End the invocation ``request_id`` with an outcome of ``kind``."""
        env = self.active.pop(request_id)
        done, env.done = env.done, None
        env.state = "idle" if kind in ("result", "error") else "dead"
        env.fresh = False
        done(Outcome(kind, fields.pop("header", {"k": kind}), body, duration_ms=fields.get("duration_ms", 5.0),
                     max_memory_mb=fields.get("max_memory_mb", 20.0), returncode=fields.get("returncode")))

    def running(self) -> list[str]:
        """Request ids running now, in the order they were sent."""
        return list(self.active)

    # ---- the Backend contract --------------------------------------------------------------

    def take_idle(self, function):
        for env in self.envs:
            if env.key == (function["name"], function["version"]) and env.state == "idle":
                env.state = "busy"
                return env
        return None

    def wait_for_warm(self, function):
        return self.warm_wait

    def new_environment(self, function):
        env = FakeEnv(function)
        self.envs.append(env)
        return env

    def is_starting(self, env) -> bool:
        return env.state == "starting"

    async def start_environment(self, env, code_for):
        code_for(env.function)
        if not self.auto_init:
            self.inits[env] = asyncio.get_running_loop().create_future()
            failure = await self.inits[env]
            if failure is not None:
                env.state = "dead"
                return failure
        env.state = "busy"
        return None

    def run(self, env, request_id, payload, encoding, timeout, on_line, done, buffers=None):
        assert env.done is None, "two invocations at once in one environment"
        env.done = done
        env.state = "busy"
        self.runs.append((env, request_id, payload))
        self.active[request_id] = env
        on_line("stdout", f"running {request_id}")
        if self.on_run is not None:
            self.on_run(env, request_id)

    def cancel(self, env):
        self.cancelled.append(env)

    def release(self, env):
        pass  # a FakeEnv left "idle" by finish() is found by take_idle

    def unreserve(self, env):
        env.state = "idle"

    def discard(self, env):
        env.state = "dead"

    def stop_function(self, name):
        for env in self.envs:
            if env.key[0] == name and env.state == "idle":
                env.state = "dead"

    def stats(self):
        return {"environments": len(self.envs)}

    def start_background(self):
        pass

    async def close(self):
        pass


async def turns(n: int = 5) -> None:
    """Let the loop run ``n`` turns (the group commit works in loop turns, not time)."""
    for _ in range(n):
        await asyncio.sleep(0)

