"""A ``%%lambda`` cell as its function's module: what runs where, and what is shipped.

The rules (the README has them for users):

- The cell's source is shipped as source.  Its top-level statements run in each
  execution environment at INIT, once per environment, as the module ``__main__``; the
  handler (the function named ``handler``, or the only function the cell defines at top
  level) is called per invocation.  Nothing of the cell runs in the kernel at deploy.
- The cell's *free names* (read by the cell or its functions, bound nowhere at the cell's
  top level, nor by ``global`` in its functions) that the notebook defines are shipped
  by value, as a decorated function's globals are, when the function deploys; rebinding
  one in the notebook deploys a new version, as for a decorated function.  Builtins and
  names the notebook does not define are left to the environment.
- ``.local()`` runs the cell in the kernel, once (on first use), in a namespace of its
  own holding the shipped names, then calls the handler there.

:class:`CellFunction` is the callable a :class:`~jupyter_faas.RemoteFunction` wraps for
a cell; :func:`analyse` finds the handler and the free names with :mod:`symtable`.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import symtable

from kernel_workers.init import CellModule

from . import dependencies


def _module_bindings(table: symtable.SymbolTable) -> set:
    """Names the cell binds at its top level, or its functions bind with ``global``."""
    bound = {s.get_name() for s in table.get_symbols()
             if s.is_assigned() or s.is_imported() or s.is_namespace()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        for sym in child.get_symbols():
            if sym.is_declared_global() and sym.is_assigned():
                bound.add(sym.get_name())
        stack.extend(child.get_children())
    return bound


def _free_globals(table: symtable.SymbolTable) -> set:
    """Global names read anywhere in the cell (at top level, or as globals of its functions)."""
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                names.add(sym.get_name())
        stack.extend(child.get_children())
    return names


def analyse(source: str, filename: str) -> tuple[list[str], set]:
    """``(top-level function names, free names)`` of a cell's (transformed) source."""
    tree = ast.parse(source, filename)
    functions = [node.name for node in tree.body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    table = symtable.symtable(source, filename, "exec")
    free = _free_globals(table) - _module_bindings(table) - set(dir(builtins))
    return functions, free


def _signature(source: str, handler: str) -> inspect.Signature | None:
    """The handler's signature from its ``def`` alone (defaults as None), without running the cell."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == handler:
            args = node.args
            stub = ast.arguments(
                posonlyargs=[ast.arg(a.arg) for a in args.posonlyargs],
                args=[ast.arg(a.arg) for a in args.args],
                vararg=args.vararg and ast.arg(args.vararg.arg),
                kwonlyargs=[ast.arg(a.arg) for a in args.kwonlyargs],
                kw_defaults=[None if d is None else ast.Constant(None) for d in args.kw_defaults],
                kwarg=args.kwarg and ast.arg(args.kwarg.arg),
                defaults=[ast.Constant(None) for _ in args.defaults])
            fn = ast.FunctionDef(name="stub", args=stub, body=[ast.Pass()], decorator_list=[],
                                 returns=None)
            fn.type_params = []  # Python 3.12+ requires it
            module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
            namespace: dict = {}
            exec(compile(module, "<signature>", "exec"), namespace)
            return inspect.signature(namespace["stub"])
    return None


class CellFunction:
    """The handler of a ``%%lambda`` cell, with the cell as its module (see the module docstring)."""

    def __init__(self, source: str, filename: str, handler: str, free: set, user_ns: dict):
        self.source, self.filename, self.handler = source, filename, handler
        self.free = sorted(free)
        self.user_ns = user_ns
        self.__name__ = self.__qualname__ = handler
        self.__module__ = "__main__"
        self.__doc__ = None
        self._local = None
        self.__signature__ = _signature(source, handler)

    def shipped(self) -> dict:
        """The notebook's values of the cell's free names, as they are now."""
        return {name: self.user_ns[name] for name in self.free if name in self.user_ns}

    def module(self, snapshot: bool = True) -> CellModule:
        """What deploys: the cell's source and the shipped values (unpickling it runs INIT)."""
        return CellModule(self.source, self.filename, self.handler, self.shipped(), snapshot)

    def dependencies(self) -> dependencies.Snapshot:
        """The shipped names, by identity where the notebook keeps them (a rebinding redeploys)."""
        snap = dependencies.Snapshot()
        for name in self.free:
            value = self.user_ns.get(name, dependencies._MISSING)
            snap.entries.append((self.user_ns, name, value))
            if value is not dependencies._MISSING:
                inner = dependencies.snapshot(value)
                snap.entries += inner.entries
                snap.cells += inner.cells
                snap.attributes += inner.attributes
        return snap

    def __call__(self, *args, **kwargs):
        """Run in the kernel: the cell runs here once, on first use, then the handler."""
        if self._local is None:
            namespace = {"__name__": "__main__", "__builtins__": builtins, **self.shipped()}
            exec(compile(self.source, self.filename, "exec"), namespace)
            self._local = namespace[self.handler]
        return self._local(*args, **kwargs)

    def __reduce__(self):
        return self.module().__reduce__()

    def __repr__(self) -> str:
        return f"<%%lambda cell handler {self.handler}>"
