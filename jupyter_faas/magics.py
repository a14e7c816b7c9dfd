"""``%%lambda NAME [--memory MB] [--timeout S] [--env K=V ...] [--concurrency N]
[--provisioned N] [--schedule EXPR] [--url token|none] [--on-file DIR/GLOB] [--queue NAME]
[--layer NAME:VERSION ...] [--backend local|dask]`` and
``%lambda ls | invoke NAME '<json>' | logs NAME | rm NAME``.

The cell magic deploys the cell as the function's module (:mod:`.client.cell`): its
top-level code runs in each execution environment at INIT, not in the kernel; its
handler (the function named ``handler``, or the only function the cell defines) runs
per invocation, as function NAME, and NAME is bound to a
:class:`~jupyter_faas.RemoteFunction`.

The trigger options put a schedule, a function URL, a file watch or a queue subscription
on the function once it is deployed; running the cell again creates no duplicate (a
trigger with the same kind and spec is kept), and the triggers an earlier run made that the
cell no longer names are deleted (they carry ``owner: %%lambda``; ones made from Python are
left alone).  Every option the server can check (limits, trigger specs) is checked before
the deploy, so a refused cell changes nothing.  ``--provisioned N`` keeps N environments of
the function started and initialized (``RemoteFunction.provision``: the cell waits until
they are up, and fails if INIT fails in them); ``--provisioned 0`` stops it, and a cell
without the option leaves it as it is.

The line commands are registered as the line magic ``%faas``; ``%lambda ...`` is
rewritten to ``%faas ...`` by an input transformer, because a *line* magic named
``lambda`` would let automagic swallow ordinary ``lambda x: x`` lines.
Errors raise (the cell fails); nothing prints an error and carries on.  A failure of
the magic itself (an unknown function, a bad option, an unreachable server) shows as one
line, as IPython shows a ``UsageError``, not as a traceback through the client; it keeps
its type (``except faas.ResourceNotFound`` still catches it).  The user's own code is
the exception: an error in the cell's body, or a handler's remote traceback, is shown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import limits
from . import errors
from .errors import FaaSError

# ``%lambda ...`` at the start of a line, or after a simple assignment (``r = %lambda ...``,
# IPython's syntax for keeping a line magic's result).
_LAMBDA_LINE = re.compile(r"^(\s*(?:[\w.\[\], ]+=\s*)?)%lambda(?=\s|$)")


def _rewrite_lambda_lines(lines: list[str]) -> list[str]:
    """``%lambda ls`` -> ``%faas ls`` and ``r = %lambda invoke ...`` -> ``r = %faas invoke ...``
    (leaves ``%%lambda`` and Python's ``lambda`` alone)."""
    return [_LAMBDA_LINE.sub(r"\1%faas", line) for line in lines]


def _one_line(exc: FaaSError, command: str) -> FaaSError:
    """Have IPython show ``exc`` as one line (its ``_render_traceback_`` hook), like a UsageError."""
    line = f"{type(exc).__name__}: {command}: {exc}"
    exc._render_traceback_ = lambda: [line]
    return exc


TRIGGER_OPTIONS = ("--schedule", "--url", "--on-file", "--queue")


def _split_glob(value: str) -> tuple[str, str]:
    """``data/in/*.png`` -> (``data/in``, ``*.png``); a plain directory -> (it, ``*``)."""
    head, tail = os.path.split(value.rstrip("/"))
    if any(c in tail for c in "*?["):
        return head or ".", tail
    return value, "*"


#: the ``owner`` the cell's triggers carry: a cell replaces the triggers it made before
CELL_OWNER = "%%lambda"


def _trigger_spec(kind: str, value: str) -> tuple[str, dict]:
    """The trigger kind and spec that ``--KIND VALUE`` asks for (as the server keeps it)."""
    if kind == "schedule":
        return "schedule", {"expression": value.strip()}
    if kind == "url":
        return "url", {"auth": value}
    if kind == "on-file":
        directory, pattern = _split_glob(value)
        return "file", {"path": os.path.normpath(os.path.abspath(directory)), "pattern": pattern,
                        "events": ["created"], "recursive": True}
    return "queue", {"queue": value}


def _check_triggers(conn, wanted: list) -> None:
    """Have the server check each trigger option (creating nothing); raise naming the option."""
    for kind, value in wanted:
        tkind, spec = _trigger_spec(kind, value)
        try:
            conn.request("POST", "/faas/api/triggers", {"kind": tkind, "function": "-", "check": True,
                                                         "spec": spec})
        except FaaSError as exc:
            exc.message = f"--{kind} {value!r} is refused: {exc.message}"
            exc.args = (exc.message,)
            raise


def _set_triggers(remote, wanted: list) -> list[str]:
    """Make the function's cell-made triggers what the cell says: keep the ones it names that
    exist (made by the cell or not: no duplicate), add the missing ones, and delete the ones an
    earlier run of the cell made that it no longer names (a changed ``--schedule`` replaces
    the old one).  Triggers made from Python are left alone.  One line each."""
    from .client import queues, triggers
    existing = triggers.triggers(function=remote.name, connection=remote.connection)
    matched, todo = set(), []
    for kind, value in wanted:
        tkind, spec = _trigger_spec(kind, value)
        same = next((t for t in existing if t.kind == tkind and t.id not in matched
                     and all(t.spec.get(k) == v for k, v in spec.items())), None)
        if same is not None:
            matched.add(same.id)
        todo.append((tkind, spec, same))
    lines = []
    for t in existing:  # first, so a replaced function URL (one per function) can be made again
        if t.spec.get("owner") == CELL_OWNER and t.id not in matched:
            t.delete()
            lines.append(f"{remote.name}: removed {t.kind} {triggers.describe_spec(t.kind, t.spec)} "
                         f"(an earlier run of this cell made it)")
    for tkind, spec, same in todo:
        if same is None and tkind == "queue":
            queues.queue(spec["queue"], connection=remote.connection)
        t = same or triggers.create(remote.connection, tkind, remote.name, dict(spec, owner=CELL_OWNER))
        where = f" {t.url}" if t.kind == "url" else ""
        lines.append(f"{remote.name}: {'kept' if same else 'added'} {t.kind} "
                     f"{triggers.describe_spec(t.kind, t.spec)}{where}")
    return lines


def _parse_cell_args(line: str) -> dict:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%%lambda: cannot parse {line!r}: {exc}") from None
    usage = ("usage: %%lambda NAME [--memory MB] [--timeout SECONDS] [--env KEY=VALUE ...] "
             "[--concurrency N] [--provisioned N] [--schedule EXPR] [--url token|none] "
             "[--on-file DIR/GLOB] [--queue NAME] "
             "[--layer NAME:VERSION ...] [--backend local|dask]")
    if not words or words[0].startswith("-"):
        raise UsageError(f"%%lambda needs a function name. {usage}")
    opts = {"name": words[0], "env": {}, "triggers": []}
    it = iter(words[1:])
    for word in it:
        key, _, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if key not in ("--memory", "--timeout", "--env", "--concurrency", "--provisioned", "--layer",
                       "--backend") + TRIGGER_OPTIONS:
            raise UsageError(f"%%lambda: unknown option {word!r}. {usage}")
        value = inline if inline and key != "--env" else next(it, None)
        if key == "--env" and inline:
            value = inline
        if value is None:
            raise UsageError(f"%%lambda: {key} needs a value. {usage}")
        try:
            if key == "--memory":
                opts["memory"] = int(value)
            elif key == "--timeout":
                opts["timeout"] = float(value)
            elif key == "--concurrency":
                opts["concurrency"] = int(value)
            elif key == "--provisioned":
                opts["provisioned"] = int(value)
                if opts["provisioned"] < 0:
                    raise UsageError(f"%%lambda: --provisioned is how many environments to keep "
                                     f"started, 0 or more (0 stops it); got {value}")
            elif key == "--backend":
                opts["backend"] = value
            elif key in TRIGGER_OPTIONS:
                opts["triggers"].append((key[2:], value))
            elif key == "--layer":  # repeatable, in order
                opts.setdefault("layers", []).append(value)
            else:
                k, sep, v = value.partition("=")
                if not sep:
                    raise UsageError(f"%%lambda: --env takes KEY=VALUE, not {value!r}")
                opts["env"][k] = v
        except ValueError:
            raise UsageError(f"%%lambda: {key} {value!r} is not a number. {usage}") from None
    return opts


@magics_class
class FaaSMagics(Magics):
    @cell_magic("lambda")
    def lambda_cell(self, line: str, cell: str):
        from .client.cell import CellFunction, analyse
        from .client.function import RemoteFunction
        opts = _parse_cell_args(line)
        wanted = opts.pop("triggers")
        provisioned = opts.pop("provisioned", None)
        try:
            name = limits.check_name(opts.pop("name"))
            limits.check_config(opts.get("memory", limits.MEMORY_DEFAULT_MB),
                                opts.get("timeout", limits.TIMEOUT_DEFAULT_S), opts["env"],
                                opts.get("concurrency"), opts.get("backend"))
            limits.check_layers(opts.get("layers"))
        except FaaSError as exc:
            raise _one_line(exc, "%%lambda") from None
        # The cell is the function's module: it runs at INIT in each environment, not here
        # (client/cell.py has the rules); only its syntax and handler are checked now.
        source = self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(source)
        functions, free = analyse(source, filename)
        handler = "handler" if "handler" in functions else None
        if handler is None:
            if len(functions) != 1:
                names = ", ".join(sorted(functions)) or "none"
                raise UsageError(f"%%lambda {name}: the cell must define a function named 'handler' "
                                 f"or exactly one function (it defined: {names})")
            handler = functions[0]
        handler = CellFunction(source, filename, handler, free, self.shell.user_ns)
        try:
            remote = RemoteFunction(handler, name=name, **opts)
            # Everything that can be checked is checked before the deploy: a refused cell changes nothing.
            self._check_before_deploy(remote, name, opts, provisioned, wanted)
            remote.deploy()
            self.shell.user_ns[name] = remote
            print(f"deployed {name} (version {remote.version}); the cell runs at INIT in each "
                  f"execution environment")
            for line_ in _set_triggers(remote, wanted):
                print(line_)
            if provisioned is not None:
                state = remote.provision(provisioned)
                print(f"{name}: provisioned concurrency stopped" if state is None else
                      f"{name}: {state['allocated']} provisioned environment(s) ready, INIT done "
                      f"({state['status']}; they follow each new version of the cell)")
        except FaaSError as exc:
            raise _one_line(exc, f"%%lambda {name}") from None
        return None

    @staticmethod
    def _check_before_deploy(remote, name: str, opts: dict, provisioned, wanted: list) -> None:
        """The options' checks that need the server (limits, trigger specs), before any deploy;
        the errors name the cell's options."""
        from .client import provisioned as prov
        concurrency = opts.get("concurrency")
        if provisioned:
            if concurrency is not None and provisioned > concurrency:
                raise errors.InvalidParameter(
                    f"--provisioned {provisioned} is over --concurrency {concurrency}: provisioned "
                    f"environments count against the function's reserved concurrency. Give "
                    f"--provisioned {concurrency} or fewer, or raise --concurrency")
            if opts.get("backend") == "dask":
                raise errors.InvalidParameter(
                    f"--provisioned {provisioned}: provisioned concurrency is not available on the "
                    f"dask backend; drop --backend dask (or --provisioned)")
            try:
                prov.check_before_deploy(remote.connection, name, provisioned,
                                         opts.get("memory", limits.MEMORY_DEFAULT_MB), concurrency)
            except errors.InvalidParameter as exc:
                raise errors.InvalidParameter(f"--provisioned {provisioned} is refused: {exc}") from None
        _check_triggers(remote.connection, wanted)

    @line_magic("faas")
    def faas_line(self, line: str):
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%lambda: cannot parse {line!r}: {exc}") from None
        usage = "usage: %lambda ls | %lambda invoke NAME '<json>' | %lambda logs NAME | %lambda rm NAME"
        if not words:
            raise UsageError(usage)
        cmd, args = words[0], words[1:]
        try:
            return self._command(cmd, args, usage)
        except FaaSError as exc:
            trace = getattr(exc, "remote_traceback", "")
            if trace:
                # The handler raised: its traceback is the user's code, worth reading.
                print(trace.rstrip(), file=sys.stderr)
            raise _one_line(exc, f"%lambda {cmd}")

    def _command(self, cmd: str, args: list[str], usage: str):
        from .client.discovery import default_connection
        conn = default_connection()
        if cmd == "ls":
            functions = conn.request("GET", "/faas/api/functions")["functions"]
            for f in functions:
                print(f"{f['name']:<24} v{f['version']:<4} memory={f['memory']}MB timeout={f['timeout']:g}s")
            if not functions:
                print("no functions deployed")
            return None
        if cmd == "invoke":
            if not args:
                raise UsageError(usage)
            event = args[1] if len(args) > 1 else "{}"
            try:
                json.loads(event)
            except ValueError as exc:
                raise UsageError(f"%lambda invoke: the event is not valid JSON: {exc}") from None
            out = conn.request("POST", f"/faas/api/functions/{args[0]}/invocations", event.encode())
            for line_ in out.get("logs", []):
                print(line_)
            if out["status"] != "succeeded":
                from .client.remote_errors import rebuild
                raise rebuild(out["error"], b"", out["request_id"], args[0])
            return out["result"]
        if cmd == "logs":
            if not args:
                raise UsageError(usage)
            rows = conn.request("GET", f"/faas/api/functions/{args[0]}/logs")["logs"]
            for row in rows:
                print(row["line"])
            return None
        if cmd == "rm":
            if not args:
                raise UsageError(usage)
            from .client import triggers
            gone = triggers.triggers(function=args[0], connection=conn)
            conn.request("DELETE", f"/faas/api/functions/{args[0]}")  # its triggers and URL go too
            if isinstance(self.shell.user_ns.get(args[0]), _remote_type()):
                del self.shell.user_ns[args[0]]
            print(f"deleted {args[0]}; its invocations and logs stay in the store "
                  f"(%lambda logs {args[0]})")
            for t in gone:
                print(f"deleted its {t.kind} {triggers.describe_spec(t.kind, t.spec)}")
            return None
        raise UsageError(f"%lambda: unknown command {cmd!r}. {usage}")


def _remote_type():
    from .client.function import RemoteFunction
    return RemoteFunction


def load(ipython) -> None:
    ipython.register_magics(FaaSMagics)
    cleanup = ipython.input_transformers_cleanup
    if _rewrite_lambda_lines not in cleanup:
        cleanup.append(_rewrite_lambda_lines)


__all__ = ["FaaSMagics", "load"]
