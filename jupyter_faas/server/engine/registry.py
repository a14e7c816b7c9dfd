"""The registry: deployed functions and their code, read through a small cache.

A map's every item needs its function version, and only deploy and delete (through
this registry) change one, so versions are cached in memory and dropped on change.
Both caches are bounded by ``kept`` (code blobs by hash, least recently used out;
versions, oldest read first out), so a server that has run thousands of versions
does not hold every one of them: one that is called again is read from the store.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from ... import limits
from ...errors import InvalidParameter, ResourceNotFound
from ..model import FunctionVersion
from .provisioning import check_reserved

#: code blobs and versions kept in memory (a code blob is one function's pickle, usually a few KB)
CODE_CACHE_ENTRIES = 256


class Registry:
    def __init__(self, store, feed, backend):
        self.store = store
        self.feed = feed
        self.backend = backend
        # (name, version or None for the latest) -> function version.  Shared, never mutated.
        self._functions: dict[tuple, dict] = {}
        self._code: "OrderedDict[str, bytes]" = OrderedDict()
        self.kept = CODE_CACHE_ENTRIES  # the bound of each cache (FaaSServer.versions_kept)

    def deploy(self, name: str, code: bytes, memory=limits.MEMORY_DEFAULT_MB,
               timeout=limits.TIMEOUT_DEFAULT_S, env=None, concurrency=None,
               lambda_config: dict | None = None, snapshot: bool | None = None,
               layers: list | None = None, backend=None) -> dict:
        """Store a version (the same code and config: the same version); returns it with
        ``created`` (a new version or not).  Raises InvalidParameter for a bad name or option.

        ``lambda_config``: what the Lambda API keeps of a function (handler, runtime, role,
        description, package hash), stored with the version as ``config["lambda"]``.
        ``snapshot``: cold starts fork from a snapshot taken after INIT (set by the client for
        functions with INIT code; absent: no snapshot); ``layers``: a notebook function's layer versions
        (``Layers.resolve``), as ``config["layers"]``."""
        limits.check_name(name)
        config = limits.check_config(memory, timeout, env, concurrency, backend)
        check_reserved(self.store, name, config.get("concurrency"))
        if lambda_config is not None:
            config["lambda"] = lambda_config
        if snapshot is not None:
            if not isinstance(snapshot, bool):
                raise InvalidParameter(f"snapshot={snapshot!r} is invalid: give true or false")
            config["snapshot"] = snapshot
        if layers:
            config["layers"] = list(layers)
        if not code:
            raise InvalidParameter("the function's code is empty; deploy a pickled callable")
        version, created = self.store.deploy(name, code, config)
        self._forget(name)
        function = dict(self.store.get_function(name, version))
        function["created"] = created
        self.feed.function(name, version, "deployed")
        return function

    def get(self, name: str, version: int | None = None) -> FunctionVersion:
        """A version (None: the latest); raises ResourceNotFound."""
        function = self._functions.get((name, version))
        if function is None:
            function = self.store.get_function(name, version)
            if function is not None:
                self._functions[(name, version)] = function
                while len(self._functions) > self.kept:  # the oldest read out (dicts keep order)
                    del self._functions[next(iter(self._functions))]
        if function is None:
            raise self._not_found(name, version)
        return function

    def require_known(self, name: str) -> None:
        """Raise ResourceNotFound unless ``name`` is deployed or was (deleted: its invocations
        and logs are still stored)."""
        if (name, None) not in self._functions and not self.store.known_function(name):
            raise self._not_found(name, None)

    def _not_found(self, name: str, version: int | None) -> ResourceNotFound:
        deleted = self.store.deleted_at(name)
        if deleted is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deleted))
            return ResourceNotFound(f"Function {name} was deleted at {when}; redeploy it "
                                    f"(@faas.function or %%lambda) to call it again")
        which = f"{name}:{version}" if version is not None else name
        return ResourceNotFound(f"Function not found: {which}. Deploy it first "
                                f"(@faas.function or %%lambda), or check `jupyter faas ls`.")

    def list(self) -> list[FunctionVersion]:
        return self.store.list_functions()

    def delete(self, name: str) -> None:
        """Delete the function (its invocations and logs stay in the store, and it is remembered
        as deleted until the name is deployed again); raises ResourceNotFound."""
        self.get(name)
        self.store.delete_function(name)
        self._forget(name)
        self.backend.stop_function(name)
        self.feed.function(name, None, "deleted")

    def code(self, function: dict) -> bytes:
        """The version's code (pickled callable), from the cache or the store."""
        sha = function["code_sha256"]
        code = self._code.get(sha)
        if code is None:
            code = self._code[sha] = self.store.code(sha)
            while len(self._code) > self.kept:
                self._code.popitem(last=False)
        else:
            self._code.move_to_end(sha)
        return code

    def stats(self) -> dict:
        """How much the caches hold (the status endpoint)."""
        return {"cached_code": len(self._code), "cached_versions": len(self._functions)}

    def _forget(self, name: str) -> None:
        for key in [k for k in self._functions if k[0] == name]:
            del self._functions[key]
