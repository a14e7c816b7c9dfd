"""What a function's pickle was made of, and a check, cheap enough for every call, that it is current.

A function ships by value with the globals it reads, the helpers it calls (and
theirs), its closure, its defaults, and the classes it uses.  A :class:`Snapshot`
holds each of those by identity, where it was found: ``(namespace, name, object)``
for a global, a class attribute or a by-value module's attribute,
``(cell, object)`` for a closure variable, ``(function, attribute, object)`` for
``__code__`` and defaults.  :meth:`Snapshot.changed` compares them all by
identity (a few hundred nanoseconds for a handful), so redefining a helper or
rebinding a global (``LIMIT = 20``) makes the next call ship the code as it is now
(a new version), while a call where nothing changed pays almost nothing.

Not covered: changing an object in place (``CONFIG["limit"] = 20``, appending to a
list) is not seen; rebind it (``CONFIG = {**CONFIG, "limit": 20}``) or call
``.deploy(force=True)``.  Code pickled by reference (an installed package's) is
the package's business.
"""

from __future__ import annotations

import sys
import types

import cloudpickle

from .serialization import _code_names

_MISSING = object()


class Snapshot:
    """The objects a pickle depended on, by identity, where they were found."""

    __slots__ = ("entries", "cells", "attributes")

    def __init__(self):
        self.entries: list[tuple] = []     # (mapping, key, object or _MISSING)
        self.cells: list[tuple] = []       # (cell, object or _MISSING)
        self.attributes: list[tuple] = []  # (object, attribute name, object)

    def changed(self) -> bool:
        """True when any of them was rebound or redefined since the snapshot."""
        for mapping, key, value in self.entries:
            if mapping.get(key, _MISSING) is not value:
                return True
        for cell, value in self.cells:
            try:
                if cell.cell_contents is not value:
                    return True
            except ValueError:  # an empty cell
                if value is not _MISSING:
                    return True
        for obj, name, value in self.attributes:
            if getattr(obj, name, _MISSING) is not value:
                return True
        return False


def snapshot(fn) -> Snapshot:
    """What pickling ``fn`` by value reads, to be checked with :meth:`Snapshot.changed`."""
    walker = _Walker(cloudpickle.list_registry_pickle_by_value())
    walker.walk(fn)
    return walker.snapshot


class _Walker:
    def __init__(self, by_value_modules):
        self.by_value_modules = set(by_value_modules) | {"__main__"}
        self.snapshot = Snapshot()
        self.seen: set[int] = set()

    def by_value(self, obj) -> bool:
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", "")
        return (module in self.by_value_modules or module not in sys.modules
                or "<locals>" in qualname or "<lambda>" in qualname
                or (module or "").split(".")[0] in self.by_value_modules)

    def walk(self, obj) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            if self.by_value(obj):
                self.function(obj)
        elif isinstance(obj, (types.MethodType, classmethod, staticmethod)):
            self.walk(obj.__func__)
        elif isinstance(obj, property):
            for part in (obj.fget, obj.fset, obj.fdel):
                if part is not None:
                    self.walk(part)
        elif isinstance(obj, type):
            if self.by_value(obj):
                self.cls(obj)
        elif not isinstance(obj, types.ModuleType) and callable(obj) and self.by_value(type(obj)):
            # A callable object defined in the notebook: its class and its own attributes.
            self.walk(type(obj))
            state = getattr(obj, "__dict__", None)
            if isinstance(state, dict):
                for key, value in state.items():
                    self.snapshot.entries.append((state, key, value))
                    self.walk(value)

    def function(self, fn: types.FunctionType) -> None:
        snap = self.snapshot
        for name in ("__code__", "__defaults__", "__kwdefaults__"):
            snap.attributes.append((fn, name, getattr(fn, name)))
        names = _code_names(fn.__code__)
        glb = fn.__globals__
        for name in names:
            value = glb.get(name, _MISSING)
            snap.entries.append((glb, name, value))  # also a builtin a new global would shadow
            if value is _MISSING:
                continue
            if isinstance(value, types.ModuleType):
                if value.__name__ in self.by_value_modules:
                    # helpers.scale(x): the module's attributes the code reads
                    for attr in names & value.__dict__.keys():
                        snap.entries.append((value.__dict__, attr, value.__dict__[attr]))
                        self.walk(value.__dict__[attr])
                continue
            self.walk(value)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                snap.cells.append((cell, _MISSING))
                continue
            snap.cells.append((cell, value))
            self.walk(value)
        for value in (fn.__defaults__ or ()) + tuple((fn.__kwdefaults__ or {}).values()):
            self.walk(value)

    def cls(self, cls: type) -> None:
        namespace = cls.__dict__  # a live view: a method set later is seen
        for key, value in list(namespace.items()):
            if key in ("__dict__", "__weakref__", "__doc__", "__module__"):
                continue
            self.snapshot.entries.append((namespace, key, value))
            self.walk(value)
        for base in cls.__bases__:
            self.walk(base)
