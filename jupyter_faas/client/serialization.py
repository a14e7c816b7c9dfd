"""Pickling for the client: functions by value, and errors that name the culprit.

Code defined in ``__main__`` (a notebook), closures and lambdas are pickled by
value by cloudpickle already; :func:`kernel_workers.tracebacks.dumps` keeps their
file names and a cell's source, for remote tracebacks.  Modules that are *not installed* (a
``mylocalhelpers.py`` next to the notebook) are registered to ship by value too,
so the execution environment never needs the user's working directory.

When something cannot be pickled, :func:`find_unpicklable` walks the function's
globals, closure and defaults (or the call's arguments) to name the object and
where it was found, e.g. ``square.__globals__['conn_lock']: _thread.lock``.

A call's large buffers (numpy arrays of 1 MB and more, together) go into a file
of the server's buffer directory when this process shares it, written once; the
pickle then only refers to them (:mod:`kernel_workers.buffers`).  A result's
buffers come back the same way and are mapped, not copied.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import sysconfig
import types
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cloudpickle

from kernel_workers import buffers, tracebacks

from ..errors import PayloadTooLarge, SerializationError

log = logging.getLogger("jupyter_faas.client")

PICKLE_PROTOCOL = 5
_INSTALLED_ROOTS = None
_by_value: set[str] = set()


def _installed_top_levels() -> set:
    global _INSTALLED_ROOTS
    if _INSTALLED_ROOTS is None:
        try:
            _INSTALLED_ROOTS = set(metadata.packages_distributions())
        except Exception:  # noqa: BLE001 - broken metadata must not break pickling
            _INSTALLED_ROOTS = set()
    return _INSTALLED_ROOTS


@functools.lru_cache(maxsize=None)  # sysconfig rebuilds its paths on every call (ms each)
def _stdlib_dirs() -> tuple:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({sysconfig.get_path(n) for n in names if sysconfig.get_path(n)})


def _is_local_module(module: types.ModuleType) -> bool:
    name = module.__name__
    top = name.split(".")[0]
    if name == "__main__" or top in sys.builtin_module_names or top in _installed_top_levels():
        return False
    if top in ("jupyter_faas", "kernel_workers", "cloudpickle", "IPython", "ipykernel"):
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return not path.startswith(_stdlib_dirs())


def register_local_modules() -> None:
    """Ship every imported module that is not installed (and not stdlib) by value."""
    for name, module in list(sys.modules.items()):
        if name in _by_value or not isinstance(module, types.ModuleType):
            continue
        try:
            local = _is_local_module(module)
        except Exception:  # noqa: BLE001 - odd modules (lazy proxies) are left alone
            local = False
        if local and "." not in name:
            try:
                cloudpickle.register_pickle_by_value(module)
                _by_value.add(name)
            except ValueError:
                pass


def _type_name(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _picklable(obj) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL)
        return True
    except BaseException:  # noqa: BLE001 - any failure means "not picklable"
        return False


def _code_names(code: types.CodeType) -> set:
    """Every global name ``code`` and the code objects nested in it read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _children(obj, path: str):
    """(path, value) of the parts of obj that pickling it would pickle."""
    if isinstance(obj, types.FunctionType):
        glb = obj.__globals__
        for name in sorted(_code_names(obj.__code__)):
            if name in glb:
                yield f"{path}.__globals__[{name!r}]", glb[name]
        if obj.__closure__:
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                try:
                    yield f"{path}.<closure>[{name!r}]", cell.cell_contents
                except ValueError:
                    pass
        for i, d in enumerate(obj.__defaults__ or ()):
            yield f"{path}.__defaults__[{i}]", d
        for k, d in (obj.__kwdefaults__ or {}).items():
            yield f"{path}.__kwdefaults__[{k!r}]", d
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{path}[{k!r}]", v
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield f"{path}[{i}]", v
    elif isinstance(obj, type):
        for k, v in vars(obj).items():
            if not k.startswith("__"):
                yield f"{path}.{k}", v
    elif hasattr(obj, "__dict__") and not isinstance(obj, types.ModuleType):
        for k, v in vars(obj).items():
            yield f"{path}.{k}", v


def find_unpicklable(obj, path: str, depth: int = 6, _seen=None) -> tuple[str, object]:
    """The deepest (path, object) that cannot be pickled, starting from obj."""
    _seen = _seen if _seen is not None else set()
    if depth == 0 or id(obj) in _seen:
        return path, obj
    _seen.add(id(obj))
    for child_path, child in _children(obj, path):
        if not _picklable(child):
            return find_unpicklable(child, child_path, depth - 1, _seen)
    return path, obj


def pickle_function(fn) -> bytes:
    """``fn`` pickled by value, its code keeping its file names (:func:`kernel_workers.tracebacks.dumps`)."""
    return tracebacks.dumps(fn, protocol=PICKLE_PROTOCOL)


def dumps_function(fn, name: str) -> bytes:
    register_local_modules()
    try:
        return pickle_function(fn)
    except BaseException as exc:  # noqa: BLE001 - includes a __reduce__ that calls sys.exit
        if isinstance(exc, KeyboardInterrupt):
            raise
        where, culprit = find_unpicklable(fn, getattr(fn, "__name__", name))
        raise SerializationError(
            f"cannot deploy {name!r}: {where}: {_type_name(culprit)} cannot be pickled "
            f"({type(exc).__name__}: {exc}). Create it inside the function instead of capturing "
            f"it, or pass what it needs as an argument.") from exc.with_traceback(None)  # pickler frames: noise


@dataclass(frozen=True)
class Payload:
    """A pickled call: the pickle, and the descriptor of its buffers' file when it has one."""

    data: bytes
    buffers: dict | None = None
    nbytes: int = 0  # the bytes inside the message, what the payload limit counts (not the file's)

    def discard(self, buffer_dir: Path | None) -> None:
        """Delete the buffers' file (the call was never accepted)."""
        if self.buffers is not None and buffer_dir is not None:
            try:
                os.unlink(buffer_dir / buffers.check_name(self.buffers["file"]))
            except (OSError, buffers.BufferFileError):
                pass


def too_large(name: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the payload of {name}() is {size} bytes; the server's limit is {limit} bytes. Nothing "
        f"was sent. Pass less data per call, or raise the limit with --FaaSServer.max_payload_mb=...")


def dumps_call(args: tuple, kwargs: dict, name: str, buffer_dir: Path | None = None,
               limit: int | None = None) -> Payload:
    """Pickle a call; with ``buffer_dir`` (shared with the server), large buffers go to a file there.

    ``limit``: the server's payload limit, checked before anything is written.  It counts
    the bytes inside the message; buffers in a file have the server's own limit (the
    function's memory), which the server checks.
    """
    try:
        data, raws = buffers.dumps((args, kwargs), out_of_band=buffer_dir is not None)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        where, culprit = "args", args
        for path, value in [(f"args[{i}]", a) for i, a in enumerate(args)] + \
                           [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]:
            if not _picklable(value):
                where, culprit = find_unpicklable(value, path)
                break
        raise SerializationError(
            f"cannot send the arguments of {name}(): {where}: {_type_name(culprit)} cannot be "
            f"pickled ({type(exc).__name__}: {exc}). Nothing was sent. Pass plain data (numbers, "
            f"strings, arrays, paths) instead.") from exc
    if limit is not None and len(data) > limit:
        raise too_large(name, len(data), limit)
    if not raws:
        return Payload(data, None, len(data))
    file_name = f"arg-{uuid.uuid4().hex}"
    try:
        spans = buffers.write(buffer_dir / file_name, raws)
    except OSError as exc:
        # Full disk, or the directory went away: send the data inside the message instead.
        log.info("could not write %s's arguments to %s (%s); sending them inline", name, buffer_dir, exc)
        data = tracebacks.dumps((args, kwargs), PICKLE_PROTOCOL)
        if limit is not None and len(data) > limit:
            raise too_large(name, len(data), limit) from exc
        return Payload(data, None, len(data))
    return Payload(data, {"file": file_name, "spans": spans}, len(data))


def result_buffers(descriptor: dict | None, body, buffer_dir: Path | None, name: str,
                   request_id: str) -> tuple:
    """``(pickle, buffers)`` of a ``done`` item: its buffers mapped from their file or cut from ``body``."""
    if descriptor is None:
        return body, None
    try:
        if "error" in descriptor:
            raise buffers.BufferFileError(descriptor["error"])
        if "lengths" in descriptor:
            lengths = descriptor["lengths"]
            start = len(body) - sum(lengths)
            if start < 0 or any(n < 0 for n in lengths):
                raise buffers.BufferFileError(f"lengths {lengths} do not fit in {len(body)} bytes")
            out, at = [], start
            for n in lengths:
                # A copy, as unpickling an in-band array makes one: the array is writable.
                out.append(bytearray(body[at:at + n]))
                at += n
            return body[:start], out
        if buffer_dir is None:
            raise buffers.BufferFileError(
                "they are in a file on the server's machine, which this client does not share")
        path = buffer_dir / buffers.check_name(descriptor.get("file"))
        return body, buffers.map_views(path, descriptor)
    except (buffers.BufferFileError, TypeError, ValueError) as exc:
        raise SerializationError(
            f"the result of {name} (request {request_id}) could not be read: its buffers: {exc}. "
            f"Invoke it again; if this persists, restart the FaaS server.") from exc


def loads_result(body: bytes, name: str, request_id: str, buffers: list | None = None):
    try:
        return cloudpickle.loads(body, buffers=buffers)
    except BaseException as exc:  # noqa: BLE001 - includes a __setstate__ that calls sys.exit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SerializationError(
            f"the result of {name} (request {request_id}) could not be unpickled in this "
            f"process: {type(exc).__name__}: {exc}. Return plain data, or make sure the "
            f"result's classes can be imported here.") from exc
