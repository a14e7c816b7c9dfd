"""The zygote: a template process that forks execution environments.

The server starts one zygote (``python -m kernel_workers.zygote --fd N``) with
the runtime and the configured preload modules (e.g. numpy) already imported,
so a cold start is a ``fork()`` plus loading the function's code, not a new
interpreter.

Data flow::

    server --fork{env, cwd, limits} + fds(control, stdout, stderr[, template link])--> zygote
    zygote --forked{env_id, pid}-->  server
    zygote --exited{pid, returncode}--> server     (the zygote is the parent, so
                                                   only it can read exit status)
    server --preload{modules}--> zygote            (learned preload: modules recently
    zygote --preloaded{module, ok, rss_mb}--> server  deployed functions imported, imported
                                                   while idle, within a memory budget)

In the forked child: new session (so the environment and everything it starts
can be killed as a group), stdout/stderr onto the server's pipes, then the
memory limit (join a cgroup, or set RLIMIT_AS as a backstop), a fresh
environment dict, its own working and scratch directories, then the runtime
loop.  A *spare* is forked before any function needs it (joining a cgroup costs
~10 ms, an RCU grace period): it joins its cgroup at once and gets the rest
from its ``init`` frame when the server gives it a function.

A *template* (a snapshot after INIT, see :mod:`kernel_workers.init`) is an environment
that finished its function's INIT and then runs this same loop on the fourth fd it was
given: environments of that version are forked from it, INIT already done.

When the server's socket closes (the server stopped or died), the zygote kills
every environment it forked and exits: no process outlives the server.

Orphans (a handler that daemonizes: ``setsid`` and a double fork) cannot escape the
environment that started them, whatever the memory enforcement.  Each environment
is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process whose parent
exits is re-parented to the environment, not to init, so it stays in the
environment's process tree, where the server's watchdog counts its memory and a kill
finds it (with a cgroup, ``cgroup.procs`` lists it anyway).  The zygote is a
subreaper too: what an environment left behind when it died (a process forked while
the tree was being killed) is re-parented to the zygote, which kills it at once; it
never forks anything else, so any child that is not an environment is such an orphan.
A session id or process group would not do (the daemon leaves both with ``setsid``),
nor a marker environment variable (a forked child's ``/proc/PID/environ`` is the
zygote's, and an ``exec`` may clear it).  An orphan that exits while its environment
lives stays a zombie until the environment stops: the environment cannot tell an
adopted child from one the handler waits for itself.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import select
import signal
import socket
import sys
import time

from . import runtime, wire

#: prctl option: orphaned descendants are re-parented to this process (Linux 3.4+)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (False where the OS cannot)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> list[int]:
    """The pids of this process's children (its own forks and the orphans it adopted)."""
    found: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
        return found
    except (OSError, ValueError):
        pass
    me = os.getpid()  # a kernel without /proc/.../children: read every process's parent
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _sigkill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return 0.0


class Zygote:
    def __init__(self, sock: socket.socket, preloaded: list, failed: dict,
                 learned: list | None = None, budget_mb: float = 0.0):
        self.channel = wire.BlockingChannel(sock, buffered=False)
        self.sock = sock
        self.children: dict[int, str] = {}
        self.preloaded = preloaded
        self.failed = failed
        #: learned preload: modules to import while idle, while RSS stays under ``budget_mb``
        self.pending: list[str] = list(learned or [])
        self.budget_mb = budget_mb

    def run(self) -> None:
        """Serve fork requests until the server's socket closes; then kill every child and exit.

        Any error ends it the same way: a send to a server that just died (an ``exited``
        frame for a child that saw the same death first) raises, and a zygote that let that
        exception end it would leave its environments running, re-parented to init.
        """
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - whatever it was, no child outlives us
            if not isinstance(exc, (ConnectionError, EOFError, KeyboardInterrupt)):
                import traceback
                traceback.print_exc()
            self.shutdown()

    def _serve(self) -> None:
        become_subreaper()
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
        self.channel.send("hello", pid=os.getpid(), preloaded=self.preloaded, failed=self.failed)
        # poll(), not select(): the socket's descriptor number is the server's (pass_fds keeps
        # it), and a busy server's can be past select()'s limit of 1024.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(rfd, select.POLLIN)
        sock_fd = self.sock.fileno()
        while True:
            try:
                events = poller.poll(0 if self.pending else None)
            except InterruptedError:
                continue
            fds = {fd for fd, _ in events}
            ready = ([self.sock] if sock_fd in fds else []) + ([rfd] if rfd in fds else [])
            if not ready and self.pending:
                self.preload_one()  # nothing to do: import one module a function used
                continue
            if rfd in ready:
                try:
                    os.read(rfd, 4096)
                except BlockingIOError:
                    pass
                self.reap()
            if self.sock in ready:
                header, _ = self.channel.recv()  # EOFError: the server is gone (see run)
                if header["k"] == "fork":
                    _, fds, _, _ = socket.recv_fds(self.sock, 1, 4)
                    self.fork(header, fds)
                elif header["k"] == "preload":
                    self.pending.extend(m for m in header["modules"]
                                        if m not in sys.modules and m not in self.pending)

    def preload_one(self) -> None:
        """Import the next learned module, if the budget allows; tell the server either way.

        One at a time, between fork requests (an import blocks them for its duration, ~100 ms
        for numpy; a thread would make every later fork unsafe).  Environments forked later
        share the module's pages copy-on-write.
        """
        name = self.pending.pop(0)
        if name in sys.modules:
            return
        used = rss_mb()
        if used >= self.budget_mb:
            self.channel.send("preloaded", module=name, ok=False, rss_mb=used,
                              error=f"over the preload budget ({used:.0f} of {self.budget_mb:.0f} MB)")
            return
        try:
            importlib.import_module(name)
            ok, error = True, None
        except BaseException as exc:  # noqa: BLE001 - a bad module must not stop the zygote
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self.channel.send("preloaded", module=name, ok=ok, error=error, rss_mb=rss_mb())

    def reap(self) -> None:
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
            if self.children.pop(pid, None) is not None:
                self.channel.send("exited", pid=pid, returncode=os.waitstatus_to_exitcode(status))
            # else: an adopted orphan (see the module docstring), killed when it was adopted
        if reaped:
            # A dead process's orphans were re-parented here before the zygote heard of its
            # exit; an environment's or an orphan's alike, they are killed.
            self.kill_orphans()

    def kill_orphans(self) -> None:
        """Kill every child that is not an environment: what a dead environment left behind."""
        for pid in children():
            if pid not in self.children:
                _sigkill(pid)

    def fork(self, header: dict, fds: list) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._child(header, fds)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - report and exit; the server sees the status
                import traceback
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)
        self.children[pid] = header["env_id"]
        self.channel.send("forked", env_id=header["env_id"], pid=pid)

    def _child(self, header: dict, fds: list) -> int:
        ctl_fd, out_fd, err_fd = fds[:3]
        # A fourth: the link this process serves forks on if it becomes a snapshot template
        runtime.template_link = fds[3] if len(fds) > 3 else None
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        self.sock.close()
        os.setsid()
        become_subreaper()  # what the handler orphans stays in this environment's tree
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (devnull, out_fd, err_fd):
            os.close(fd)
        # Join the memory cgroup before anything user-controlled runs.  A spare (forked
        # ahead of need, no function yet) gets its environment and directories later,
        # from its init frame.
        runtime.prepare_process(header)
        ctl = socket.socket(fileno=ctl_fd)
        if runtime.serve(ctl) == "template":  # INIT done: fork this version's environments
            link = socket.socket(fileno=runtime.template_link)
            link.setblocking(True)
            Zygote(link, [], {}).run()
        return 0

    def shutdown(self) -> None:
        # Environments and adopted orphans alike; each death may re-parent more orphans
        # here, so kill whatever is a child until nothing is (or the time is up).
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pids = set(children()) | set(self.children)
            for pid in pids:
                _sigkill(pid)
            try:
                pid, _ = os.waitpid(-1, 0)
                self.children.pop(pid, None)
            except ChildProcessError:
                break
        os._exit(0)


def _preload(names: list) -> tuple[list, dict]:
    loaded, failed = [], {}
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - a bad preload must not stop the zygote
            failed[name] = f"{type(exc).__name__}: {exc}"
    return loaded, failed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="kernel_workers.zygote")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the server")
    parser.add_argument("--preload", default="", help="comma-separated modules to import once")
    parser.add_argument("--learned", default="",
                        help="comma-separated modules to import in the background, within the budget")
    parser.add_argument("--budget-mb", type=float, default=0.0,
                        help="learned modules are imported while RSS stays under this")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)
    names = [n for n in args.preload.split(",") if n.strip()]
    loaded, failed = _preload([n.strip() for n in names])
    learned = [n.strip() for n in args.learned.split(",") if n.strip()]
    Zygote(sock, loaded, failed, learned, args.budget_mb).run()


if __name__ == "__main__":
    main()
