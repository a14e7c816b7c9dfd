"""The functions the backend runs on Dask workers, shipped by value.

A task names its function by reference (``kernel_workers.dask_worker.invoke``) unless it is
pickled by value; a worker that cannot import the module then fails to read the whole
message and leaves the cluster.  So each remote call is a small stub made here (a closure:
cloudpickle ships it by value) that imports :mod:`kernel_workers.dask_worker` when it runs,
and a worker without it fails only that task, with what to install.
"""

from __future__ import annotations

MISSING = "kernel_workers is not importable on this Dask worker"


def _remote(name: str):
    def call(*args, **kwargs):
        import importlib
        try:
            module = importlib.import_module("kernel_workers.dask_worker")
        except ImportError as exc:
            try:
                from distributed import get_worker
                where = get_worker().address
            except (ImportError, ValueError):
                where = "?"
            raise ImportError(f"{MISSING} {where} ({type(exc).__name__}: {exc})") from None
        return getattr(module, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"faas_{name}"
    return call


start = _remote("start")
invoke = _remote("invoke")
cancel = _remote("cancel")
stop = _remote("stop")
shutdown = _remote("shutdown")
