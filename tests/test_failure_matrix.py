"""Every way an invocation can fail, through every way of calling, each with its exact error.

Stages: pickle the arguments in the client, unpickle them in the environment, run,
pickle the result in the environment, unpickle the result in the client.
Failures: an exception, sys.exit, os._exit, a segfault, a memory overrun, a timeout.
Besides the stages: an argument or a result over the payload limit, and an invocation
cancelled by someone else (another kernel, the panel) while it runs.

os._exit, segfaults, memory overruns and timeouts in the *client's own* (un)pickling
would happen in the user's process, outside any environment, so there is no
invocation to fail there: those cells are not applicable and not listed.

Call paths (each case runs through each):

* ``direct``     ``f(x)``, over the server's direct Unix socket (the default on one machine)
* ``websocket``  ``f(x)`` with ``JUPYTER_FAAS_DIRECT=0``: over the client's websocket
* ``spawn``      ``f.spawn(x).result()``
* ``map``        the second item of ``f.map([ok, x])``
* ``unshared``   ``f(x)`` against a server started with ``--FaaSServer.share_buffers=False``

One server per path family (the first four share one; ``unshared`` has its own), and
the same few functions for every case.  What differs between paths, and is therefore
not in the matrix: Ctrl-C (a sync call and ``map`` re-raise the ``KeyboardInterrupt``,
a future's ``cancel()`` gives ``Cancelled``; see test_cancel_and_durability.py) and
``Throttled`` (only a sync call throttles; ``spawn`` and ``map`` queue).
"""

import threading

import pytest

import jupyter_faas as faas
from conftest import ServerProcess, wait_for
from failures import MB, FailOnPickle, FailOnUnpickle, fail

PATHS = ("direct", "websocket", "spawn", "map", "unshared")

IN_ENV = {
    "exception": None,  # per stage, below
    "sys.exit": (faas.RuntimeExited, "exit status 3"),
    "os._exit": (faas.RuntimeExited, "exit status 4"),
    "segfault": (faas.RuntimeExited, "SIGSEGV"),
    "memory": (faas.OutOfMemory, "limit of 128 MB"),
    "timeout": (faas.InvocationTimeout, "Task timed out after 1.00 seconds"),
}
EXCEPTION_IN = {
    "unpickle_in_env": (faas.SerializationError, "arguments could not be unpickled"),
    "run": (ValueError, "boom"),
    "pickle_in_env": (faas.SerializationError, "result could not be pickled"),
}


@faas.function(memory=128, timeout=1, name="matrix_run")
def run_stage(how):
    return fail(how)


@faas.function(memory=128, timeout=1, name="matrix_args")
def take_arg(arg):
    return "took it"


@faas.function(memory=128, timeout=1, name="matrix_result_pickle")
def return_fail_on_pickle(how):
    return FailOnPickle(how)


@faas.function(memory=128, timeout=1, name="matrix_result_unpickle")
def return_fail_on_unpickle(how):
    return FailOnUnpickle(how)


@faas.function(memory=128, timeout=1, name="matrix_big_result")
def big_result(n):
    return b"x" * n


@faas.function(memory=128, timeout=60, name="matrix_cancelled")
def wait_to_be_cancelled(seconds):
    import time
    time.sleep(seconds)


def _limit(conn):
    return conn.request("GET", "/faas/api/status")["max_payload_bytes"]


def _cancel_when_running(conn):
    """Like another kernel or the panel: cancel the invocation through the REST API once it runs."""
    def running():
        rows = conn.request("GET", "/faas/api/invocations",
                            params={"function": "matrix_cancelled", "status": "running"})
        return rows["invocations"]

    def cancel():
        for row in wait_for(running, 60, what="matrix_cancelled to run"):
            conn.request("POST", f"/faas/api/invocations/{row['request_id']}/cancel")
    threading.Thread(target=cancel, daemon=True).start()
    return 60


# stage -> (the function, (how, connection) -> the argument that fails, an argument that works)
STAGES = {
    "pickle_in_client": (take_arg, lambda how, _: FailOnPickle(how), 1),
    "unpickle_in_env": (take_arg, lambda how, _: FailOnUnpickle(how), 1),
    "run": (run_stage, lambda how, _: how, "ok"),
    "pickle_in_env": (return_fail_on_pickle, lambda how, _: how, "ok"),
    "unpickle_in_client": (return_fail_on_unpickle, lambda how, _: how, "ok"),
    "argument_too_large": (take_arg, lambda _, conn: b"x" * (_limit(conn) + MB), 1),
    "result_too_large": (big_result, lambda _, conn: _limit(conn) + MB, 1),
    "cancelled_by_another": (wait_to_be_cancelled, lambda _, conn: _cancel_when_running(conn), 0),
}

CASES = []
for how in IN_ENV:
    for stage in ("unpickle_in_env", "run", "pickle_in_env"):
        expected = EXCEPTION_IN[stage] if how == "exception" else IN_ENV[how]
        CASES.append((stage, how, *expected))
for how in ("exception", "sys.exit"):
    CASES.append(("pickle_in_client", how, faas.SerializationError, "cannot send the arguments"))
    CASES.append(("unpickle_in_client", how, faas.SerializationError, "could not be unpickled in this process"))
CASES += [
    ("argument_too_large", "-", faas.PayloadTooLarge, "the server's limit is"),
    ("result_too_large", "-", faas.ResponseSizeTooLarge, r"the result is \d+ bytes; the limit is 6291456 bytes"),
    ("cancelled_by_another", "-", faas.Cancelled, "cancelled"),
]


def _call(path: str, fn, arg, ok):
    if path == "spawn":
        return fn.spawn(arg).result(timeout=60)
    if path == "map":
        return fn.map([ok, arg])
    return fn(arg)


@pytest.fixture(scope="module")
def unshared_server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("faas"), "--FaaSServer.share_buffers=False").start()
    yield s
    s.stop()


@pytest.fixture
def path_conn(request, server, monkeypatch):
    """A connection that calls the way the test's ``path`` says."""
    from jupyter_faas.client import discovery
    path = request.node.callspec.params["path"]
    if path == "websocket":
        monkeypatch.setenv("JUPYTER_FAAS_DIRECT", "0")
    target = request.getfixturevalue("unshared_server") if path == "unshared" else server
    conn = faas.connect(target.url, target.token)
    status = conn.request("GET", "/faas/api/status")
    assert status["direct_socket"], "the direct and websocket paths must differ"
    assert ("buffers" in status) == (path != "unshared")
    yield conn
    discovery.reset()


@pytest.mark.parametrize("stage,how,error,text", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("path", PATHS)
def test_failure_matrix(path_conn, path, stage, how, error, text):
    fn, failing, ok = STAGES[stage]
    with pytest.raises(error, match=text) as info:
        _call(path, fn, failing(how, path_conn), ok)
    exc = info.value
    assert isinstance(exc, faas.FaaSError)
    if error is ValueError:
        # the handler's own type, and a FunctionError carrying the remote traceback
        assert isinstance(exc, faas.FunctionError)
        assert "in fail" in str(exc.__cause__) and "ValueError: boom" in str(exc.__cause__)
    else:
        assert type(exc) is error, f"{type(exc).__mro__} is not exactly {error}"
    if path == "map" and stage != "pickle_in_client" and stage != "argument_too_large":
        assert any(note.startswith("map item 1 failed") for note in getattr(exc, "__notes__", ()))
    # The environment that failed is replaced: the next call works.
    assert take_arg(1) == "took it"


def test_remote_traceback_shows_the_source_line(conn):
    """The traceback of a function shipped by value (a notebook's, a helper module's) quotes
    its source lines, as a local one would."""
    with pytest.raises(ValueError) as info:
        run_stage("exception")
    assert 'raise ValueError("boom")' in str(info.value.__cause__)


def test_crash_names_signal_and_last_log_lines(conn):
    @faas.function(name="crasher")
    def crasher():
        print("about to crash")
        import ctypes
        ctypes.string_at(0)

    with pytest.raises(faas.RuntimeExited) as info:
        crasher()
    msg = str(info.value)
    assert "signal: SIGSEGV (-11)" in msg and "segmentation fault" in msg
    assert "about to crash" in msg
