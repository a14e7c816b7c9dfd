"""INIT: the code a function runs once per execution environment, before its first invocation.

Lambda runs a handler module's top-level code once per environment (INIT) and the
handler per invocation.  Two things deploy INIT here, both pickled by reference to
this module (so unpickling one *runs* it, in the environment, as the runtime's
``cloudpickle.loads`` of the function's code):

- :class:`CellModule`: a ``%%lambda`` cell.  Its source runs as the module, in a fresh
  namespace that first holds the values the notebook shipped for the cell's free names;
  the handler is looked up in it afterwards.
- :class:`WithInit`: ``@faas.function(init=load)``.  ``load()`` runs, then the handler is
  returned.  cloudpickle rebuilds functions of one pickle that shared a globals dict with
  one shared dict, so a ``global model`` that ``load`` assigns is what the handler reads.

An exception raised by INIT code is remembered (:data:`failure`) so the runtime can tell
it (the user's INIT failed: ``Runtime.*`` init errors, stage ``init_code``) from a
failure to unpickle the code (stage ``init``).

After INIT, :func:`fork_unsafe` says whether the process may be forked as a snapshot
(no threads left running, no sockets held), and forked environments run the
:func:`on_restore` hooks, as Lambda's SnapStart runs ``@register_after_restore`` hooks.

Stdlib only, like the rest of ``kernel_workers``.
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import time

#: the exception INIT code raised in this process (None: INIT did not fail)
failure: BaseException | None = None
#: whether the function's code had INIT of its own (a cell, or ``init=``)
declared = False
#: the snapshot opt-out of the function (``snapshot=False``), as the code says it
snapshot_allowed = True
#: modules imported by INIT, reported to the server (learned preload)
imported: list[str] = []
#: how long INIT's own code took, in ms
init_ms = 0.0

_restore_hooks: list = []


def on_restore(callback):
    """Run ``callback()`` in every environment forked from a snapshot taken after INIT.

    For what must differ between environments: reseed ``random`` / ``numpy.random``,
    renew ids, reconnect.  Returns ``callback`` (usable as a decorator).  Call it from
    INIT code; outside an environment it only records the hook.
    """
    _restore_hooks.append(callback)
    return callback


def run_restore_hooks() -> None:
    """Run the hooks registered at INIT (in a forked environment, before its first invocation)."""
    import random
    random.seed()  # the stdlib generator's state was copied by fork: never repeat a sibling's
    for hook in list(_restore_hooks):
        hook()


def fork_unsafe() -> str | None:
    """Why this process (after INIT) must not be forked as a snapshot, or None when it may."""
    if not snapshot_allowed:
        return "the function opted out (snapshot=False)"
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        return (f"INIT left {len(threads)} thread(s) running ({', '.join(threads[:3])}): a fork "
                f"copies only the calling thread")
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        fds = []
    held = []
    for fd in fds:
        if int(fd) <= 2:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:") and int(fd) not in _own_fds:
            held.append(fd)
    if held:
        return (f"INIT holds {len(held)} open socket(s) (a connection would be shared by every "
                f"fork); open connections in the handler, or reopen them in a faas.on_restore hook")
    return None


#: the runtime's own sockets (its control link), not the user's
_own_fds: set = set()


def _run(code_fn) -> None:
    """Run INIT code, recording its failure, its time and the modules it imported."""
    global failure, declared, init_ms
    declared = True
    before = set(sys.modules)
    started = time.perf_counter()
    try:
        code_fn()
    except BaseException as exc:
        failure = exc
        raise
    finally:
        init_ms = (time.perf_counter() - started) * 1000
        imported.extend(sorted({m.split(".")[0] for m in set(sys.modules) - before
                                if not m.startswith("_")}))


class CellModule:
    """A ``%%lambda`` cell, shipped as source: unpickling it runs the cell (INIT) and
    returns its handler."""

    def __init__(self, source: str, filename: str, handler: str, shipped: dict,
                 snapshot: bool = True):
        self.source, self.filename, self.handler = source, filename, handler
        self.shipped, self.snapshot = shipped, snapshot

    def __reduce__(self):
        return load_cell, (self.source, self.filename, self.handler, self.shipped, self.snapshot)


def load_cell(source: str, filename: str, handler: str, shipped: dict, snapshot: bool = True):
    """Run a cell as the module ``__main__`` of this environment; return its handler."""
    global snapshot_allowed
    snapshot_allowed = snapshot
    # Tracebacks show the cell's lines, as they would in the notebook.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, **shipped}
    code = compile(source, filename, "exec")
    _run(lambda: exec(code, namespace))
    fn = namespace.get(handler)
    if fn is None or not callable(fn):
        raise NameError(f"the cell defines no function {handler!r} to run as the handler")
    return fn


class WithInit:
    """``@faas.function(init=load)``: unpickling it runs ``load()`` and returns the handler."""

    def __init__(self, handler, init, snapshot: bool = True):
        self.handler, self.init, self.snapshot = handler, init, snapshot

    def __reduce__(self):
        return load_with_init, (self.handler, self.init, self.snapshot)


def load_with_init(handler, init, snapshot: bool = True):
    global snapshot_allowed
    snapshot_allowed = snapshot
    _run(init)
    return handler


class Plain:
    """A function with no INIT of its own but an explicit ``snapshot=`` choice."""

    def __init__(self, handler, snapshot: bool):
        self.handler, self.snapshot = handler, snapshot

    def __reduce__(self):
        return load_plain, (self.handler, self.snapshot)


def load_plain(handler, snapshot: bool):
    global snapshot_allowed
    snapshot_allowed = snapshot
    return handler


def init_error_type(exc: BaseException) -> tuple[str, str]:
    """Lambda's errorType and message for an exception INIT code raised (awslambdaric's rules)."""
    if isinstance(exc, SyntaxError):
        return "Runtime.UserCodeSyntaxError", f"Syntax error in module '__main__': {exc}"
    if isinstance(exc, ImportError):
        return "Runtime.ImportModuleError", f"Unable to import module '__main__': {exc}"
    return type(exc).__name__, str(exc)
