"""One backend per function: the router the engine sees when the server has more than one.

A function version names its backend in its configuration (``@faas.function(backend="dask")``);
one that names none runs on the server's default (``--FaaSServer.backend``).  The router
implements :class:`~.base.Backend` by delegating each call to the backend of the function
(or of the environment, remembered when it was handed out).  A function naming a backend
this server does not run gets a clear error when it is invoked, and everything else keeps
running.
"""

from __future__ import annotations

import asyncio
import weakref

from .base import Backend, Outcome


class Unavailable(Backend):
    """A backend this server was not configured with: every invocation ends with ``reason``."""

    class _Env:
        def __init__(self, function):
            self.id, self.function, self.init_ms, self.fresh = "unavailable", function, None, True
            self.init_type = "on-demand"

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def take_idle(self, function):
        return None

    def wait_for_warm(self, function):
        return None

    def new_environment(self, function):
        return self._Env(function)

    def is_starting(self, env) -> bool:
        return True

    async def start_environment(self, env, code_for) -> Outcome | None:
        return Outcome("error", {"errorType": "ServiceException", "errorMessage": self.reason})

    def run(self, env, request_id, payload, encoding, timeout, on_line, done, buffers=None):
        asyncio.get_running_loop().call_soon(done, Outcome("error", {
            "errorType": "ServiceException", "errorMessage": self.reason}))

    def cancel(self, env):
        pass

    def release(self, env):
        pass

    def unreserve(self, env):
        pass

    def discard(self, env):
        pass

    def stop_function(self, name):
        pass

    def stats(self) -> dict:
        return {"backend": self.name, "available": False}

    def start_background(self):
        pass

    async def close(self):
        pass


class Router(Backend):
    def __init__(self, backends: dict, default: str):
        if default not in backends:
            raise ValueError(f"the default backend {default!r} is not one of {sorted(backends)}")
        self.backends = backends
        self.default = default
        self._owner: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def backend_for(self, function: dict) -> Backend:
        name = function.get("backend") or self.default
        backend = self.backends.get(name)
        if backend is None:
            backend = self.backends[name] = Unavailable(name, (
                f"function {function['name']} runs on the {name!r} backend, which this server "
                f"does not run; start it with --FaaSServer.backend={name} (and, for dask, "
                f"--FaaSServer.dask_scheduler=tcp://host:8786 or local:N)"))
        return backend

    def _own(self, env, backend):
        if env is not None:
            self._owner[env] = backend
        return env

    def _of(self, env) -> Backend:
        return self._owner[env]

    def take_idle(self, function):
        backend = self.backend_for(function)
        return self._own(backend.take_idle(function), backend)

    def wait_for_warm(self, function):
        return self.backend_for(function).wait_for_warm(function)

    def new_environment(self, function):
        backend = self.backend_for(function)
        return self._own(backend.new_environment(function), backend)

    def is_starting(self, env) -> bool:
        return self._of(env).is_starting(env)

    async def start_environment(self, env, code_for):
        return await self._of(env).start_environment(env, code_for)

    def run(self, env, request_id, payload, encoding, timeout, on_line, done, buffers=None):
        self._of(env).run(env, request_id, payload, encoding, timeout, on_line, done, buffers)

    def init_lines(self, env) -> list:
        return self._of(env).init_lines(env)

    def cancel(self, env):
        self._of(env).cancel(env)

    def release(self, env):
        self._of(env).release(env)

    def unreserve(self, env):
        self._of(env).unreserve(env)

    def discard(self, env):
        self._of(env).discard(env)

    def can_lease(self, function) -> bool:
        return self.backend_for(function).can_lease(function)

    def lease(self, function, lease_id, fields, env=None):
        backend = self.backend_for(function)
        lease = backend.lease(function, lease_id, fields) if env is None else \
            backend.lease(function, lease_id, fields, env=env)
        if lease is not None:
            self._owner[lease] = backend
            self._own(lease.env, backend)  # a promoted invocation's env: cancel() finds its backend
        return lease

    def end_lease(self, lease):
        self._of(lease).end_lease(lease)

    def lease_ran(self, lease, arg_file):
        self._of(lease).lease_ran(lease, arg_file)

    def kill_leased(self, lease, reason):
        self._of(lease).kill_leased(lease, reason)

    def stop_function(self, name):
        for backend in self.backends.values():
            backend.stop_function(name)

    def provision(self, function, count, code_for):
        self.backend_for(function).provision(function, count, code_for)

    def provisioned_environments(self, function) -> list[dict]:
        return self.backend_for(function).provisioned_environments(function)

    async def wait_provisioned(self, function) -> None:
        await self.backend_for(function).wait_provisioned(function)

    def snapshot_state(self, function):
        return self.backend_for(function).snapshot_state(function)

    def memory_pool(self, function):
        return self.backend_for(function).memory_pool(function)

    def provisioned(self, function) -> int:
        return self.backend_for(function).provisioned(function)

    def provision_failure(self, function):
        return self.backend_for(function).provision_failure(function)

    def stats(self) -> dict:
        # The top level keeps its shape (this machine's environments); each backend is below.
        out = dict(self.backends["local"].stats()) if "local" in self.backends else {}
        out["default_backend"] = self.default
        out["backends"] = {name: b.stats() for name, b in self.backends.items()}
        return out

    def start_background(self):
        for backend in self.backends.values():
            backend.start_background()

    async def close(self):
        for backend in list(self.backends.values()):
            await backend.close()
