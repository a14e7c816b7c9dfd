"""Finding this user's FaaS server (or starting one), and the process's default connection.

Discovery order: :func:`connect` (explicit URL and token), then the
``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN`` environment variables, then the runtime file
(0600) in Jupyter's runtime dir; if none answers, a server is started in the background,
detached, shared by every kernel of this user.

This module does not load the websocket client: the Jupyter server extension
(:mod:`jupyter_faas.panel.backend`) needs only :func:`discover`.  :func:`connect` loads
:mod:`.connection` when it is first called.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time

import psutil

from .. import errors, paths

_lock = threading.Lock()
_default = None  # the Connection calls use unless given another


def alive(info: dict) -> bool:
    """Whether the server process a runtime file names is running."""
    try:
        # A zombie (a dead server its parent has not reaped) still answers kill(pid, 0).
        return psutil.Process(int(info["pid"])).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def start_server(timeout: float = 60.0) -> dict:
    """Start a detached server for this user (unless one is already up) and return its info.

    Raises :class:`~jupyter_faas.errors.ServerError` if it exits at start or is not up
    within ``timeout`` seconds (its log is named).
    """
    runtime = paths.runtime_file()
    runtime.parent.mkdir(parents=True, exist_ok=True)
    with open(runtime.parent / "jupyter_faas-start.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        info = paths.read_runtime_file()
        if info and alive(info):
            return info
        env = {k: v for k, v in os.environ.items()
               if k not in ("JUPYTER_FAAS_URL", "JUPYTER_FAAS_TOKEN")}
        logfile = open(runtime.parent / "jupyter_faas-server.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "jupyter_faas", "serve"], env=env,
                                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = paths.read_runtime_file()
            if info and info.get("pid") == proc.pid:
                # Reap it when it ends, so a long-lived starter (the Jupyter server) keeps
                # no zombie, which would look alive to the next discovery.
                threading.Thread(target=proc.wait, name="jupyter_faas-reaper", daemon=True).start()
                return info
            if proc.poll() is not None:
                raise errors.ServerError(
                    f"the FaaS server exited at start with status {proc.returncode}; see "
                    f"{runtime.parent / 'jupyter_faas-server.log'}")
            time.sleep(0.05)
        raise errors.ServerError(f"the FaaS server did not start within {timeout:g} s; see "
                                 f"{runtime.parent / 'jupyter_faas-server.log'}")


def discover(check=None) -> tuple[str, str]:
    """The URL and token of this user's FaaS server, starting one if none answers.

    ``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN`` first, then the runtime file when its
    process is alive (and ``check(url, token)``, if given, returns something true), else
    a newly started background server. Blocks while a server starts: call it from a
    thread where a loop must not wait (the Jupyter server extension does).
    """
    if os.environ.get("JUPYTER_FAAS_URL"):
        return os.environ["JUPYTER_FAAS_URL"], os.environ.get("JUPYTER_FAAS_TOKEN", "")
    info = paths.read_runtime_file()
    if info and alive(info) and (check is None or check(info["url"], info["token"])):
        return info["url"], info["token"]
    info = start_server()
    return info["url"], info["token"]


def _find_or_start_server(start: bool = True) -> tuple[str, str] | None:
    """After a drop: the runtime file's server if it is alive; else, with ``start``, a new
    background server, as for a first call (the start lock keeps it to one however many
    kernels ask); else None."""
    found = _runtime_file_server()
    if found is not None or not start:
        return found
    info = start_server()
    return info["url"], info["token"]


def _runtime_file_server() -> tuple[str, str] | None:
    """The runtime file's server, if its process is alive."""
    info = paths.read_runtime_file()
    if info and info.get("url") and info.get("token") and alive(info):
        return info["url"], info["token"]
    return None


def connect(url: str | None = None, token: str | None = None):
    """Connect to a FaaS server and make it the default for this process; returns the
    :class:`~.connection.Connection`.

    With no arguments: ``JUPYTER_FAAS_URL``/``JUPYTER_FAAS_TOKEN``, then the runtime
    file, then a newly started background server.  Raises
    :class:`~jupyter_faas.errors.ServerError` when the server cannot be reached.
    """
    from .connection import Connection  # here, not at the top: see the module docstring

    def attempt(u: str, t: str):
        try:
            return Connection(u, t)
        except errors.FaaSError:
            return None

    global _default
    with _lock:
        if url is not None:
            # given: it keeps meaning this server (a call fails, saying so, when it is gone)
            conn = Connection(url, token or os.environ.get("JUPYTER_FAAS_TOKEN", ""),
                              address_from="faas.connect(url, token)")
        elif os.environ.get("JUPYTER_FAAS_URL"):
            url, token = discover()
            conn = Connection(url, token, address_from="JUPYTER_FAAS_URL")
        else:
            tried: list = []  # the runtime file's server, connected while checking it answers
            url, token = discover(check=lambda u, t: tried.append(attempt(u, t)) or tried[-1])
            conn = tried[-1] if tried and tried[-1] is not None else Connection(url, token)
            # found through the runtime file: when it is gone (a restart, a stop, a crash, even
            # while this process was idle), look there for the next server, or start one
            conn.rediscover = _find_or_start_server
        if _default is not None:
            _default.close()
        _default = conn
        return conn


def default_connection():
    """The process's connection, made by :func:`connect` on first use."""
    conn = _default
    if conn is None:
        conn = connect()
    return conn


def reset() -> None:
    """Forget the default connection (tests, or after the server was restarted)."""
    global _default
    with _lock:
        if _default is not None:
            _default.close()
        _default = None


def _after_fork_in_child() -> None:
    global _lock
    # Another thread of the parent may have held it at the fork; the child has no such thread.
    # The default connection itself stays: it makes its own sockets in the child
    # (Connection's own fork hook), so `faas.connect(url, token)` keeps meaning the same server.
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
