"""A handler's error as the caller sees it: its own type and attributes, and a traceback that
reads like a local one (the user's file, line and source; none of the runtime's frames)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest

import jupyter_faas as faas

from conftest import ROOT

HERE = os.path.abspath(__file__)


def _three_ways(fn, *args) -> list[BaseException]:
    """The error of one call, as the call raises it, as its future has it and from the store."""
    with pytest.raises(faas.FunctionError) as info:
        fn(*args)
    fut = fn.spawn(*args)
    inv = fn.invoke(*args)
    return [info.value, fut.exception(timeout=30), faas.Invocation.from_id(inv.request_id).error]


def _line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


# ---- exceptions keep their type ------------------------------------------------------------------

def test_an_exception_keeps_its_type_and_attributes_whatever_its_init(conn):
    class QuotaExceeded(Exception):
        def __init__(self, user, limit):
            super().__init__(f"user {user} is over the limit of {limit}")
            self.user, self.limit = user, limit

    @faas.function(name="quota")
    def quota(user):
        raise QuotaExceeded(user, 10)

    for err in _three_ways(quota, "ada"):
        assert isinstance(err, QuotaExceeded) and isinstance(err, faas.FunctionError)
        assert (err.user, err.limit) == ("ada", 10)
        assert str(err) == "user ada is over the limit of 10"
        assert err.request_id and err.remote_type == "QuotaExceeded"
    try:
        quota("bob")
    except QuotaExceeded as err:  # the notebook's own class catches it
        assert err.user == "bob"

    import mylocalhelpers  # a module shipped by value: its class comes back as the same class
    charge = faas.function(mylocalhelpers.charge, name="charge")
    with pytest.raises(mylocalhelpers.QuotaExceeded) as info:
        charge("cy")
    assert (info.value.user, info.value.limit) == ("cy", 10)

    import subprocess as importable  # an importable class, attributes outside its args
    @faas.function(name="fails_cmd")
    def fails_cmd():
        raise importable.CalledProcessError(3, ["ls"], output=b"out", stderr=b"err")

    with pytest.raises(importable.CalledProcessError) as info:
        fails_cmd()
    assert (info.value.returncode, info.value.output, info.value.stderr) == (3, b"out", b"err")


def test_what_cannot_travel_is_dropped_and_named_and_the_type_is_kept(conn):
    class Holding(Exception):
        def __init__(self, user, lock):
            super().__init__(f"{user} holds it", lock)
            self.user, self.lock = user, lock

    @faas.function(name="holding")
    def holding(user):
        raise Holding(user, threading.Lock())

    for err in _three_ways(holding, "ada"):
        assert isinstance(err, Holding) and isinstance(err, faas.FunctionError)
        assert err.user == "ada" and not hasattr(err, "lock")
        assert err.args[0] == "ada holds it" and "lock" in err.args[1]
        note = " ".join(err.__notes__)
        assert "could not be pickled" in note and "lock (lock)" in note and "args[1] (lock" in note


# ---- tracebacks read like local ones ------------------------------------------------------------

def test_a_remote_traceback_starts_in_the_users_code_with_file_line_and_source(conn):
    def check(score):
        if score > 1:
            raise ValueError(f"score {score} is over 1")
        return score

    @faas.function(name="score")
    def score(x):
        return check(x / 2)

    @faas.function(name="score_async")
    async def score_async(x):
        return check(x / 2)

    for fn in (score, score_async):
        for err in _three_ways(fn, 4):
            trace = err.remote_traceback
            assert str(err.__cause__) == f'\n"""\n{trace}"""'
            frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', trace)
            # The user's code starts the traceback: no runtime, asyncio or <dynamic-code> frames.
            assert [(f, name) for f, _, name in frames] == [(HERE, fn.__name__), (HERE, "check")]
            assert int(frames[1][1]) == _line_of(check, "raise ValueError")
            assert 'raise ValueError(f"score {score} is over 1")' in trace
            assert "return check(x / 2)" in trace
            assert "kernel_workers" not in trace and "<dynamic-code>" not in trace


def test_a_function_passed_as_an_argument_keeps_its_file_too(conn):
    @faas.function(name="apply")
    def apply(fn, x):
        return fn(x)

    err = apply.invoke(lambda x: 1 / x, 0).error
    assert isinstance(err, ZeroDivisionError)
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)\n +(.*)', err.remote_traceback)
    assert frames == [(HERE, "apply", "return fn(x)"),
                      (HERE, "<lambda>", "err = apply.invoke(lambda x: 1 / x, 0).error")]


def test_a_cells_remote_traceback_shows_the_cell_and_its_source(server, conn, tmp_path):
    from kernels import RawKernel
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    kernel = RawKernel(env, str(tmp_path))
    try:
        out, err = kernel.run(textwrap.dedent("""\
            import jupyter_faas as faas

            @faas.function(name="cell_score")
            def cell_score(x):
                total = x * 2
                raise KeyError(f"no score for {total}")
            """))
        assert err is None, err
        out, err = kernel.run("cell_score(21)")
        shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err["traceback"]))
        assert err["ename"] == "KeyError"
        # The cell's file (ipykernel's name for it), the line in the cell, and its source text.
        assert re.search(r'File "[^"]*ipykernel_\d+[/\\]\d+\.py", line 6, in cell_score', shown), shown
        assert 'raise KeyError(f"no score for {total}")' in shown
        assert "kernel_workers" not in shown and "<dynamic-code>" not in shown
    finally:
        kernel.kill()


_CLIENT = textwrap.dedent("""\
    import cloudpickle, re, sys
    import jupyter_faas as faas
    from jupyter_faas.client.serialization import pickle_function

    def helper(n):
        raise RuntimeError(f"bad {n}")

    def handler(n):
        return helper(n + 1)

    # The mapping itself: the code keeps its file through a pickle round trip.
    loaded = cloudpickle.loads(pickle_function(handler))
    assert loaded.__code__.co_filename == __file__, loaded.__code__.co_filename
    versions = faas.function(lambda: cloudpickle.__version__, name="which")()
    assert versions == cloudpickle.__version__ == sys.argv[1], (versions, sys.argv[1])
    try:
        faas.function(handler, name="cp_handler")(1)
    except RuntimeError as err:
        print(err.remote_traceback)
    """)


@pytest.fixture(scope="module")
def cloudpickle_versions(tmp_path_factory):
    """cloudpickle's oldest allowed and newest release, each in a directory to put first on sys.path."""
    out = {}
    for version in ("3.0.0", "3.1.3"):
        target = tmp_path_factory.mktemp(f"cloudpickle-{version}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(target), f"cloudpickle=={version}"], check=True, timeout=300)
        out[version] = target
    return out


@pytest.mark.parametrize("version", ["3.0.0", "3.1.3"])
def test_tracebacks_with_the_oldest_and_newest_cloudpickle(make_server, cloudpickle_versions,
                                                           tmp_path, version):
    path = os.pathsep.join([str(cloudpickle_versions[version]), str(ROOT)])
    server = make_server(env={"PYTHONPATH": path})  # its environments load that cloudpickle too
    script = tmp_path / "score_script.py"
    script.write_text(_CLIENT)
    env = dict(os.environ, PYTHONPATH=path, JUPYTER_FAAS_URL=server.url,
               JUPYTER_FAAS_TOKEN=server.token)
    run = subprocess.run([sys.executable, str(script), version], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n +(.*)', run.stdout)
    assert frames == [(str(script), "9", "handler", "return helper(n + 1)"),
                      (str(script), "6", "helper", 'raise RuntimeError(f"bad {n}")')], run.stdout


# ---- the caller's traceback: their call, then the remote one -------------------------------------

def _library_frames(exc: BaseException) -> list[str]:
    import traceback
    package = os.path.dirname(faas.__file__)
    return [f"{f.filename}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)
            if f.filename.startswith(package)]


def test_a_call_or_map_raises_the_functions_error_with_one_library_frame(conn):
    @faas.function(name="tb_div", show=False)
    def tb_div(x):
        return 1 / x

    with pytest.raises(ZeroDivisionError) as call:
        tb_div(0)
    with pytest.raises(ZeroDivisionError) as mapped:
        tb_div.map([1, 0, 2])
    for info in (call, mapped):
        # Only the entry point the user called (IPython hides it too: __tracebackhide__);
        # the frames of the handler are in the remote traceback, the cause.
        assert len(_library_frames(info.value)) == 1, _library_frames(info.value)
        assert "1 / x" in str(info.value.__cause__)


def test_a_failed_map_says_it_cancelled_its_unfinished_items(conn):
    import time

    @faas.function(name="tb_slow_or_fail", show=False)
    def slow_or_fail(x):
        if x == 0:
            raise ValueError("item zero is bad")
        time.sleep(30)
        return x

    with pytest.raises(ValueError) as info:
        slow_or_fail.map(range(4))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "map item 0 failed" in notes
    assert "the map cancelled the 3 item(s) unfinished when this one failed" in notes and "return_exceptions=True" in notes


def test_an_error_with_a_megabyte_message_fails_as_itself_on_every_path(conn):
    """A message larger than a frame's header (1 MB) once made the environment's answer a frame
    the server refused: the call failed as "killed from outside the runtime".  Now the recorded
    message and trace are cut (saying so) and the caller's exception keeps every character."""
    @faas.function(name="huge_message", timeout=60)
    def huge(n):
        raise ValueError("e" * n)

    size = 3_000_000
    for err in _three_ways(huge, size) + [huge.spawn(size).exception(timeout=30)]:
        assert isinstance(err, ValueError) and err.remote_type == "ValueError"
    raised = _three_ways(huge, size)[:2]
    assert all(str(err) == "e" * size for err in raised)
    results = huge.map([size] * 6, return_exceptions=True, show=False)
    assert all(isinstance(r, ValueError) and str(r) == "e" * size for r in results)
    for inv in (huge.invoke(size), huge.invoke(size)):
        row = conn.request("GET", f"/faas/api/invocations/{inv.request_id}")
        assert row["status"] == "failed" and row["error"]["errorType"] == "ValueError", row["error"]
        message = row["error"]["errorMessage"]
        assert message.startswith("e" * 1000) and len(message) < 70_000
        assert message.endswith(f"…[{size - 64 * 1024:,} more characters cut here; the exception "
                                "the caller gets has them all]")
        assert sum(map(len, row["error"]["stackTrace"])) < 140_000


def test_following_hundreds_of_ended_failures_at_once_hears_of_every_one(conn):
    """A client that follows 600 failed invocations at once (a re-attach after a restart does)
    is told of each: the server's answer from their rows came in frames of 500 items, whose
    errors made a header over the wire's 1 MB cap that the client refused."""
    import concurrent.futures
    from jupyter_faas.client.invocation import InvocationFuture

    @faas.function(name="many_failures")
    def bad(x):
        raise ValueError(f"{x}:" + "v" * 6000)

    raised = bad.map(range(600), return_exceptions=True, show=False)
    rids = [err.request_id for err in raised]
    assert all(isinstance(err, ValueError) for err in raised) and all(rids)
    futures = {}
    for rid in rids:
        fut = InvocationFuture("many_failures", conn)
        fut._accepted(rid, None)
        futures[rid] = fut
    conn.watch(futures, logs=False)
    done, not_done = concurrent.futures.wait(futures.values(), timeout=60)
    assert not not_done, f"{len(not_done)} of 600 never heard of"
    for x, rid in enumerate(rids):
        err = futures[rid].exception()
        assert isinstance(err, ValueError) and str(err) == f"{x}:" + "v" * 6000


def test_a_handler_that_raises_keyboardinterrupt_fails_as_a_function_error_not_a_ctrl_c(conn):
    """A KeyboardInterrupt raised in the handler came back as a KeyboardInterrupt: the caller
    could not tell it from pressing Ctrl-C, and ``except Exception`` let it through."""
    @faas.function(name="raises_interrupt")
    def interrupted(x):
        raise KeyboardInterrupt(f"stop at {x}")

    for err in _three_ways(interrupted, 3):
        assert isinstance(err, faas.FunctionError) and not isinstance(err, KeyboardInterrupt)
        assert err.remote_type == "KeyboardInterrupt" and "stop at 3" in str(err)
    results = interrupted.map(range(3), return_exceptions=True, show=False)
    assert all(isinstance(r, faas.FunctionError) and not isinstance(r, KeyboardInterrupt) for r in results)
