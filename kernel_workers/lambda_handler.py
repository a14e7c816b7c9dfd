"""Zip-packaged functions: import a Lambda ``Handler`` (``module.function``) from unpacked code.

The server stores, as such a function's code, the pickle of a :class:`HandlerRef`: a
reference to :func:`load` with the unpacked directory and the handler name (never the
user's code itself).  The runtime's ``cloudpickle.loads`` at INIT therefore calls
:func:`load` in the new environment, which puts the code directory first on
``sys.path`` (then the layers' directories), sets ``LAMBDA_TASK_ROOT`` and ``_HANDLER``,
and imports the module, as Lambda's Python runtime does.  Its failures are Lambda's init
errors, with Lambda's messages and ``errorType`` (``Runtime.ImportModuleError``...).

A notebook function with layers (``@faas.function(layers=...)``, ``%%lambda --layer``) is
stored as the user's pickle and wrapped, as it goes to an environment, in a
:class:`LayeredCode`: unpickling it puts the layers' directories on ``sys.path`` first and
then loads the user's pickle, so the handler and its pickled globals can import from them.

Stdlib only, like the rest of ``kernel_workers``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import sys


def _init_error(short: str):
    """An exception class whose ``__name__`` is Lambda's ``Runtime.<short>``.

    The runtime reports ``type(exc).__name__`` as the errorType; the class keeps a plain
    ``__qualname__``, so it still pickles by reference (the client re-raises it).
    """
    cls = type(short, (Exception,), {"__module__": __name__})
    cls.__name__ = f"Runtime.{short}"
    return cls


ImportModuleError = _init_error("ImportModuleError")
HandlerNotFound = _init_error("HandlerNotFound")
UserCodeSyntaxError = _init_error("UserCodeSyntaxError")
MalformedHandlerName = _init_error("MalformedHandlerName")


class HandlerRef:
    """What the server pickles as a zip function's code: ``load(task_root, handler, paths)``."""

    def __init__(self, task_root: str, handler: str, paths: tuple = ()):
        self.task_root, self.handler, self.paths = task_root, handler, tuple(paths)

    def __reduce__(self):
        return load, (self.task_root, self.handler, self.paths)


class LayeredCode:
    """A notebook function's pickle, loaded after its layers join ``sys.path``:
    ``load_layered(paths, code)``."""

    def __init__(self, paths: tuple, code: bytes):
        self.paths, self.code = tuple(paths), bytes(code)

    def __reduce__(self):
        return load_layered, (self.paths, self.code)


class _WithContext:
    """A handler whose second parameter is not named ``context`` still gets it positionally."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, event, context):
        return self.fn(event, context)


def _put_first(paths) -> None:
    """``paths`` at the head of ``sys.path``, in their order (inserted in reverse)."""
    for path in reversed(tuple(paths)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def load_layered(paths: tuple, code: bytes):
    """The function pickled in ``code``, unpickled once ``paths`` (its layers) are on ``sys.path``.
    Its own code travels in the pickle, so the layers come first on the path."""
    _put_first(paths)
    return pickle.loads(code)  # a cloudpickle: plain pickle loads it (cloudpickle is importable)


def load(task_root: str, handler: str, paths: tuple = ()):
    """Import ``handler`` from ``task_root`` (then ``paths``) and return the callable to run."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise MalformedHandlerName(f"Bad handler '{handler}': {exc}") from None
    if not module_name or not function_name:
        raise MalformedHandlerName(f"Bad handler '{handler}': an empty module or function name")
    _put_first((task_root, *paths))  # the code first, then the layers
    os.environ["LAMBDA_TASK_ROOT"] = task_root
    os.environ["_HANDLER"] = handler
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise UserCodeSyntaxError(f"Syntax error in module '{module_name}': {exc}") from None
    except ImportError as exc:
        raise ImportModuleError(f"Unable to import module '{module_name}': {exc}") from None
    fn = getattr(module, function_name, None)
    if fn is None or not callable(fn):
        raise HandlerNotFound(f"Handler '{function_name}' missing on module '{module_name}'")
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    return fn if "context" in params else _WithContext(fn)
