"""A handler's exception, sent back so the client raises it as its own type, attributes and all.

An exception pickles by default as ``cls(*self.args)`` and then its ``__dict__``:
that breaks for any ``__init__`` whose parameters are not its ``args``
(``QuotaExceeded(user, limit)`` calling ``super().__init__(message)``), and one
attribute that cannot be pickled (a socket, a lock) loses the whole exception.
So :func:`dumps` sends ``rebuild(cls, args, attributes)`` instead, which makes
the instance without calling ``__init__``; an exception class with its own
``__reduce__`` (``OSError``, ``json.JSONDecodeError``) keeps it when it round-trips.
What cannot travel is left out and named in a note on the exception, never the
exception itself.  The class travels by reference when importable, by value when
it was shipped by value (cloudpickle then gives the client back its own class).

Not covered: ``__cause__`` and ``__context__`` (the traceback text shows them), and
a class that cannot be pickled at all (the client then raises a plain
``FunctionError`` naming the type).
"""

from __future__ import annotations

import builtins

import cloudpickle

PICKLE_PROTOCOL = 5
#: the note that names what was left out
DROPPED_NOTE = "not sent from the execution environment (could not be pickled): "


def new_instance(cls: type, args: tuple) -> BaseException:
    """An instance of ``cls`` with ``args``, made without calling its ``__init__``."""
    try:
        exc = cls.__new__(cls, *args)
    except TypeError:  # a __new__ with its own signature: the nearest built-in base's
        base = next(b for b in cls.__mro__ if b.__module__ == builtins.__name__)
        exc = base.__new__(cls, *args)
    exc.args = args
    return exc


def rebuild(cls: type, args: tuple, attributes: dict, dropped: tuple = ()) -> BaseException:
    """The exception on the client: ``cls`` with its args and attributes (the pickle calls this)."""
    exc = new_instance(cls, args)
    exc.__dict__.update(attributes)
    if dropped:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), DROPPED_NOTE + ", ".join(dropped)]
    return exc


class _Rebuilt:
    """Pickles as a call of :func:`rebuild`, so unpickling gives the exception itself."""

    def __init__(self, *fields):
        self.fields = fields

    def __reduce__(self):
        return rebuild, self.fields


def _dumps(obj) -> bytes | None:
    try:
        return cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    except BaseException:  # noqa: BLE001 - any failure means "cannot travel"
        return None


def dumps(exc: BaseException) -> bytes:
    """The exception's pickle, or ``b""`` when not even its class can travel."""
    cls = type(exc)
    exc.__traceback__ = None
    if cls.__reduce__ is not BaseException.__reduce__:  # the class says how it pickles
        data = _dumps(exc)
        try:
            if data is not None and type(cloudpickle.loads(data)) is cls:
                return data
        except BaseException:  # noqa: BLE001 - its __reduce__ does not round-trip: ours instead
            pass
    attributes = dict(getattr(exc, "__dict__", {}))
    data = _dumps(_Rebuilt(cls, exc.args, attributes))
    if data is not None:
        return data
    if _dumps(cls) is None:
        return b""
    dropped, kept = [], {}
    for key, value in attributes.items():
        if _dumps(value) is None:
            dropped.append(f"{key} ({type(value).__qualname__})")
        else:
            kept[key] = value
    args = []
    for i, value in enumerate(exc.args):
        if _dumps(value) is None:
            dropped.append(f"args[{i}] ({type(value).__qualname__}, sent as its repr)")
            value = repr(value)
        args.append(value)
    return _dumps(_Rebuilt(cls, tuple(args), kept, tuple(dropped))) or b""
