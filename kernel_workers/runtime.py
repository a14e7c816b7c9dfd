"""The execution environment's loop: load one function, run its invocations one at a time.

An environment is one process, forked from the zygote, that talks to the server
over one control socket (frames from :mod:`kernel_workers.wire`).  Its stdout and
stderr are pipes the *server* reads, so every line the handler or its children
print reaches the server even if this process is killed the next instant.

Stages of an invocation, each reported with its own ``stage`` so the client can
say exactly what failed:

    unpickle   payload bytes -> (args, kwargs)       (deserialization of the input)
    run        handler(*args, **kwargs)              (the user's code)
    pickle     result -> bytes                       (serialization of the output)

Large buffers (numpy arrays) come and go by file when the server gives a buffer
directory (``init``'s ``buffers_dir``): an ``invoke`` whose header has ``buffers``
maps the argument's file, and a result's buffers are written to the file the
server's rule names (:func:`kernel_workers.buffers.result_name`) and described in
the ``result`` header.  With ``ask_files`` (the local server), the environment first
asks for that file (a ``result_file`` frame with its size; the server answers with
one, ``ok`` when the file is there to write over).  See :mod:`kernel_workers.buffers`.

Limits are not policed here: the server enforces timeout and memory from the
outside (a process is never trusted to police itself).  ``sys.exit`` in user
code ends this process with that status, as it would on Lambda.
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import socket
import sys
import tempfile  # imported here so the zygote has it: a cold start then does not pay ~5 ms
import time

import cloudpickle

from . import buffers, exceptions, init as init_code, lease, wire
from .context import LambdaContext, call_with_context, context_parameter
from . import tracebacks
from .tracebacks import bounded, error_fields

PICKLE_PROTOCOL = 5


def _check_not_lazy(result) -> None:
    """A generator cannot travel back; say what to do instead of a pickling error."""
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        kind = "an async generator" if inspect.isasyncgen(result) else "a generator"
        name = getattr(result, "__qualname__", "")
        raise TypeError(f"the handler returned {kind} (from {name}()), which cannot be "
                        f"sent back: return a list instead (return list(...)), or use .imap() "
                        f"to get many results as they come")


def peak_rss_mb() -> float | None:
    """This process's peak RSS (``VmHWM``) since the supervisor last reset it, in MB.

    Read here and sent with the result, so the server's event loop does not read
    ``/proc/<pid>/status`` once per invocation; the server reads it itself when an
    environment dies without answering.  None where there is no ``/proc``.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            status = f.read()
        at = status.find(b"VmHWM:")
        return int(status[at + 6:status.index(b"\n", at)].split()[0]) / 1024 if at >= 0 else None
    except (OSError, ValueError, IndexError):
        return None


def _path_entries() -> set:
    """The zygote's ``sys.path``, as absolute paths (taken before the function adds its own)."""
    return {os.path.abspath(p or os.getcwd()) for p in sys.path if isinstance(p, str)}


def zygote_importable(names, paths: set) -> list[str]:
    """Of the top-level modules ``names`` (imported here), those the zygote could import too:
    found through ``paths`` (its ``sys.path``), or built in.  A module of a Lambda zip package
    or a layer (on the path only with the function's directory) or one shipped by value is
    not: learned preload would fail to import it in the zygote."""
    out = []
    for name in names:
        spec = getattr(sys.modules.get(name), "__spec__", None)
        if spec is None:
            continue
        origin = spec.origin
        locations = list(spec.submodule_search_locations or [])
        if origin in (None, "built-in", "frozen", "namespace") and not locations:
            if origin in ("built-in", "frozen"):
                out.append(name)
            continue
        if origin in (None, "namespace"):  # a namespace package: where its portions live
            roots = {os.path.dirname(os.path.abspath(loc)) for loc in locations}
        else:
            root = os.path.dirname(os.path.abspath(origin))
            roots = {os.path.dirname(root) if locations else root}  # a package: above pkg/
        if roots and roots <= paths:
            out.append(name)
    return out


ZYGOTE_PATH = _path_entries()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not hide the result
            pass


def prepare_process(fields: dict) -> None:
    """Put this process in its execution environment: memory limit, environment, directories.

    Run in the forked child before any user code: at fork time, or (for a spare
    forked ahead of need) from the ``init`` frame's ``setup`` when it is given a function.
    """
    cgroup_procs = fields.get("cgroup_procs")
    if cgroup_procs:
        with open(cgroup_procs, "w") as f:
            f.write(str(os.getpid()))
    rlimit_as = fields.get("rlimit_as")
    if rlimit_as:
        resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))
    if "environ" in fields:
        os.environ.clear()
        os.environ.update(fields["environ"])
    for d in (fields.get("cwd"), fields.get("tmpdir")):
        if d:
            os.makedirs(d, exist_ok=True)
    if fields.get("cwd"):
        os.chdir(fields["cwd"])
    if "tmpdir" in fields:
        tempfile.tempdir = fields["tmpdir"] or None


class Environment:
    def __init__(self, channel: wire.BlockingChannel):
        self.channel = channel
        self.handler = None
        self.context_parameter: str | None = None  # how the handler takes Lambda's context
        self.config: dict = {}
        self.buffers_dir: str | None = None
        self.loop = None  # the event loop of async handlers, kept across warm invocations
        self.modules_after_init: set | None = None  # until the first invocation has run
        #: control frames that came while the runtime waited for another (see _file_from_server)
        self.deferred: list = []
        #: the zygote's import path (this module is imported there, before any function's
        #: INIT adds its own): what learned preload can import
        self.zygote_path = ZYGOTE_PATH

    def init(self, header: dict, code: bytes) -> bool:
        """INIT: load the function (which runs its INIT code, if it has any), or take it from
        the snapshot this process was forked from (``snapshot``: then the restore hooks run)."""
        global _loaded
        started = time.perf_counter()
        self.config = header
        self.buffers_dir = header.get("buffers_dir")
        before = set(sys.modules)
        try:
            if header.get("snapshot"):
                if _loaded is None:
                    raise RuntimeError("asked to start from a snapshot, but this process has none")
                handler = _loaded
                init_code.run_restore_hooks()
            else:
                handler = cloudpickle.loads(code)
            if not callable(handler):
                raise TypeError(f"the deployed object is a {type(handler).__name__}, not a function")
            self.context_parameter = context_parameter(handler)
            self.handler = handler
        except BaseException as exc:  # noqa: BLE001 - any failure to load is an init error
            _flush()
            if exc is init_code.failure:  # the function's own INIT code raised
                fields = error_fields(exc, "init_code")
                fields["errorType"], fields["errorMessage"] = init_code.init_error_type(exc)
                bounded(fields)
            else:
                fields = error_fields(exc, "restore" if header.get("snapshot") else "init")
            self.channel.send("init_error", exceptions.dumps(exc), **fields)
            return False
        _loaded = handler
        self.modules_after_init = set(sys.modules)
        imported = sorted(zygote_importable({m.split(".")[0] for m in set(sys.modules) - before
                                             if not m.startswith("_")} | set(init_code.imported),
                                            self.zygote_path))
        ready = {"init_ms": (time.perf_counter() - started) * 1000, "pid": os.getpid(),
                 "imported": imported[:64], "init_code": init_code.declared}
        if header.get("template"):
            _flush()
            ready["unsafe"] = init_code.fork_unsafe()
        self.channel.send("ready", **ready)
        return True

    def invoke(self, header: dict, payload: bytearray) -> None:
        """Run one invocation the server sent and answer it on the control socket."""
        kind, body, fields = self.execute(header, payload)
        self.channel.send(kind, body, **fields)
        if fields.get("errorType") == "Runtime.OutOfMemory" and kind == "error":
            os._exit(137)  # the heap may be exhausted or fragmented: never reuse this process

    def execute(self, header: dict, payload, hwm=peak_rss_mb) -> tuple[str, bytes, dict]:
        """Run one invocation: ``(kind, body, fields)`` of its ``result`` or ``error`` frame.

        ``fields``: ``request_id``, ``duration_ms`` and ``cpu_ms`` (ms), ``hwm_mb`` (MB), and for an
        error the Lambda error fields (:func:`.tracebacks.error_fields`).  Raises SystemExit
        when the handler called ``sys.exit`` (the runtime exits, as Lambda's does).
        """
        rid = header["request_id"]
        encoding = header.get("encoding", "pickle")
        started = time.perf_counter()
        cpu_started = time.process_time()  # the server tells CPU-bound from I/O-bound work by it
        stage = "unpickle"
        try:
            if encoding == "json":
                args, kwargs = (json.loads(payload) if payload else {},), {}
            else:
                args, kwargs = cloudpickle.loads(payload, buffers=self._argument_buffers(header))
            stage = "run"
            result = call_with_context(self.handler, self.context_parameter, args, kwargs,
                                       lambda: self._context(header))
            if inspect.isawaitable(result):  # an ``async def`` handler
                result = self._await(result)
            stage = "pickle"
            # The arguments are spent: let go of their mapped file now (unless the handler kept
            # them), so the server can reuse its cached pages for the next large buffer.
            args = kwargs = None
            _check_not_lazy(result)
            described = {}
            if encoding == "json":
                body = json.dumps(result).encode()
            else:
                body, described = self._dumps_result(rid, result)
        except SystemExit:  # sys.exit() in the handler: the runtime exits, as Lambda's does
            _flush()
            raise
        except BaseException as exc:  # noqa: BLE001 - everything else (KeyboardInterrupt too,
            # which only the handler can raise here: nothing sends this process SIGINT) is the
            # invocation's error
            duration = (time.perf_counter() - started) * 1000
            _flush()
            fields = error_fields(exc, stage)
            if isinstance(exc, MemoryError):
                fields["errorType"] = "Runtime.OutOfMemory"
            elif stage == "pickle" and encoding == "json":
                fields["errorType"] = "Runtime.MarshalError"
            return "error", exceptions.dumps(exc), dict(
                request_id=rid, duration_ms=duration, cpu_ms=(time.process_time() - cpu_started) * 1000,
                hwm_mb=hwm(), **fields)
        duration = (time.perf_counter() - started) * 1000
        _flush()
        if self.modules_after_init is not None:  # the first invocation: what it imported
            new = set(sys.modules) - self.modules_after_init
            self.modules_after_init = None
            if new:
                described["imported"] = sorted(zygote_importable(
                    {m.split(".")[0] for m in new if not m.startswith("_")}, self.zygote_path))[:64]
        return "result", body, dict(request_id=rid, encoding=encoding, duration_ms=duration,
                                    cpu_ms=(time.process_time() - cpu_started) * 1000,
                                    hwm_mb=hwm(), **described)

    def _await(self, awaitable):
        """Run an async handler's coroutine to its end on this environment's event loop.

        One loop for the environment's life, so what a warm handler keeps in its globals
        (a client session, a connection pool) stays bound to a live loop.
        """
        if self.loop is None:
            import asyncio  # only async handlers pay for it
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(awaitable)

    def _context(self, header: dict) -> LambdaContext:
        return LambdaContext(header["request_id"], self.config.get("function", ""),
                             str(self.config.get("version", "")), self.config.get("memory", 128),
                             header.get("deadline_ms", 0),
                             os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))

    def _argument_buffers(self, header: dict) -> list | None:
        descriptor = header.get("buffers")
        if descriptor is None:
            return None
        if self.buffers_dir is None:
            raise buffers.BufferFileError("the invocation's buffers are in a file, but this "
                                          "environment was given no buffer directory")
        path = os.path.join(self.buffers_dir, buffers.check_name(descriptor.get("file")))
        return buffers.map_views(path, descriptor)

    def _dumps_result(self, request_id: str, result) -> tuple[bytes, dict]:
        """The result's pickle, and ``{"buffers": descriptor}`` when its buffers went to a file."""
        body, raws = buffers.dumps(result, out_of_band=self.buffers_dir is not None)
        if not raws:
            return body, {}
        name = buffers.result_name(request_id)
        try:
            spans = buffers.write(os.path.join(self.buffers_dir, name), raws,
                                  existing=self._file_from_server(request_id, raws))
        except OSError:
            # No room or no access: the server still takes the result in the frame.
            return tracebacks.dumps(result, PICKLE_PROTOCOL), {}
        return body, {"buffers": {"file": name, "spans": spans}}

    def _file_from_server(self, request_id: str, raws: list) -> bool:
        """Ask the server for the result's file (``init``'s ``ask_files``), True once it made it.

        The server renames a spare of the right size to the result's name, or makes one: either
        way the file's pages were cached (and charged) by the server, so the page cache of a
        large result never counts against this function's memory.
        """
        if not self.config.get("ask_files"):
            return False
        self.channel.send("result_file", request_id=request_id, nbytes=buffers.file_size(raws))
        while True:
            header, body = self.channel.recv()
            if header["k"] == "result_file":
                return bool(header.get("ok"))
            self.deferred.append((header, body))  # a lease's revoke, a stop: after this invocation

    def serve(self) -> str | None:
        """Serve invocations until the link closes; ``"template"`` when this process became one."""
        header, body = self.channel.recv()
        if header["k"] != "init":
            return
        if header.get("setup"):
            prepare_process(header["setup"])
        if not self.init(header, bytes(body)):
            return
        if header.get("template") and init_code.fork_unsafe() is None:
            # A snapshot: every environment forked from here gets its own control socket; the
            # zygote's loop serves forks on the template link (kernel_workers.zygote).
            self.channel.sock.close()
            return "template"
        while True:
            if self.deferred:
                header, body = self.deferred.pop(0)
            else:
                try:
                    header, body = self.channel.recv()
                except EOFError:
                    return
            if header["k"] == "invoke":
                self.invoke(header, body)
            elif header["k"] == "lease":
                # its descriptors follow in a message of their own (the control channel reads
                # no byte past a frame, so they are not dropped by a read-ahead)
                _, fds, _, _ = socket.recv_fds(self.channel.sock, 1, 3)
                if len(fds) != 3 or lease.serve(self, header, fds) == "stop":
                    return
            elif header["k"] == "stop":
                return


#: the handler this process loaded at INIT: what a process forked from it as a snapshot runs
_loaded = None
#: the socket a template serves forks on (given by the zygote with the control socket)
template_link: int | None = None


def serve(sock) -> str | None:
    """Run an environment on an already connected control socket until it closes; ``"template"``
    when it finished INIT as a snapshot template (then serve forks on :data:`template_link`)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    init_code._own_fds.add(sock.fileno())
    if template_link is not None:
        init_code._own_fds.add(template_link)
    # unbuffered: a lease's descriptors come after its frame, and a read-ahead would drop them
    return Environment(wire.BlockingChannel(sock, buffered=False)).serve()
