"""The client is safe in every process shape: forks, done callbacks, early cancels, and its
own module layering (discovery without the websocket client; display without the client).

Real server, no mocks; every wait is on a condition, bounded so a regression fails rather
than hangs.
"""

import ast
import multiprocessing
import os
import queue
import threading
import time
from pathlib import Path

import pytest

import jupyter_faas as faas
from jupyter_faas.client import discovery

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jupyter_faas"


def wait_until(condition, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s")
        time.sleep(0.02)


@pytest.fixture(params=["direct", "websocket"])
def any_conn(request, server, monkeypatch):
    """A default connection that sends sync calls over the direct socket, or only the websocket."""
    if request.param == "websocket":
        monkeypatch.setenv("JUPYTER_FAAS_DIRECT", "0")
    c = faas.connect(server.url, server.token)
    assert (c._direct is not None) == (request.param == "direct")
    yield c
    discovery.reset()


# ---- fork ---------------------------------------------------------------------------------

def square(x):
    return x * x


_SQUARE = faas.function(square, name="fork_square")


def _square_in_child(x):
    return (x, _SQUARE(x), os.getpid())


def test_forked_pool_workers_get_right_answers_on_their_own_connections(any_conn):
    # The parent has used every part of the client before it forks: the IO thread, the
    # websocket (a spawn still in flight), and the direct socket (a sync call).
    assert _SQUARE(3) == 9
    outstanding = _SQUARE.spawn(4)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        got = pool.map_async(_square_in_child, range(40), chunksize=1).get(timeout=90)
    assert [(x, y) for x, y, _ in got] == [(x, x * x) for x in range(40)]
    assert {pid for _, _, pid in got} - {os.getpid()}, "the items ran in the forked workers"
    # The parent's own connection is untouched by its children.
    assert outstanding.result(timeout=60) == 16
    assert _SQUARE(5) == 25
    assert _SQUARE.spawn(6).result(timeout=60) == 36


def _child_reports_parent_future(fut, conn_out):
    try:
        fut.result(timeout=30)
        conn_out.send("no error")
    except faas.FaaSError as exc:
        conn_out.send(f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        conn_out.send(f"unexpected {type(exc).__name__}: {exc}")


def test_a_forked_child_is_told_the_parents_pending_future_is_not_its_own(conn, tmp_path):
    gate = tmp_path / "gate"
    slow = faas.function(wait_for_file, name="fork_wait_for_gate", timeout=60, show=False)
    fut = slow.spawn(str(gate), str(tmp_path / "never"))
    fut.wait_accepted(60)
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_reports_parent_future, args=(fut, child_end))
    child.start()
    try:
        assert parent_end.poll(60), "the child hung on its copy of the parent's future"
        message = parent_end.recv()
    finally:
        child.join(30)
    assert message.startswith("ServerError") and "forked" in message, message
    gate.write_text("go")
    assert fut.result(timeout=60) == "ran"


# ---- callbacks ----------------------------------------------------------------------------

def step(x):
    return x + 1


def test_a_blocking_call_in_a_done_callback_works_and_later_calls_still_run(any_conn):
    f_step = faas.function(step, name="cb_step", show=False)
    seen: "queue.Queue" = queue.Queue()
    f = f_step.spawn(1)
    f.add_done_callback(lambda fut: seen.put(faas.Invocation.from_id(fut.request_id).status))
    assert seen.get(timeout=60) == "succeeded"
    # A callback may also make a call of its own, sync or spawned, and wait for it.
    g = f_step.spawn(10)
    g.add_done_callback(lambda fut: seen.put((f_step(fut.result()), f_step.spawn(0).result(60))))
    assert seen.get(timeout=60) == (12, 1)
    assert f_step(2) == 3
    assert f_step.spawn(3).result(timeout=60) == 4


def test_a_blocking_call_from_the_io_thread_fails_at_once_and_the_client_keeps_working(conn):
    f_step = faas.function(step, name="cb_observer_step", show=False)
    errors: "queue.Queue" = queue.Queue()

    def on_done(fut):  # observers run on the client's IO thread
        try:
            faas.invocations(limit=1)
            errors.put(None)
        except faas.FaaSError as exc:
            errors.put(exc)

    fut = f_step.spawn(1)
    fut.add_observer(on_done=on_done)
    exc = errors.get(timeout=60)
    assert exc is not None and "IO thread" in str(exc)
    assert fut.result(timeout=60) == 2
    assert f_step(5) == 6


# ---- cancel -------------------------------------------------------------------------------

def wait_for_file(gate, effect):
    """Wait for ``gate`` to exist, then write ``effect`` (the side effect a cancel must stop)."""
    while not os.path.exists(gate):
        time.sleep(0.01)
    Path(effect).write_text("side effect")
    return "ran"


def write_now(effect):
    Path(effect).write_text("side effect")
    return "ran"


def test_cancel_before_the_call_was_sent_means_it_never_runs(conn, tmp_path):
    effect = tmp_path / "effect"
    writer = faas.function(write_now, name="cancel_write_now", show=False)
    writer.deploy()
    # Hold the client's IO thread so the spawn below is still in the outbox when cancelled.
    held, release = threading.Event(), threading.Event()
    conn._io_loop().call_soon_threadsafe(lambda: (held.set(), release.wait(60)))
    assert held.wait(60)
    try:
        fut = writer.spawn(str(effect))
        assert fut.cancel() is True
        assert fut.cancelled() and fut.done()
        with pytest.raises(faas.Cancelled):
            fut.result()
    finally:
        release.set()
    # Calls reach the server in the order they were made: once a later call has run, the
    # cancelled one would have been recorded if it had been sent.
    assert writer(str(tmp_path / "later")) == "ran"
    assert not effect.exists()
    assert [inv.status for inv in faas.invocations(function="cancel_write_now")] == ["succeeded"]


def test_cancel_after_sending_but_before_acceptance_reaches_the_server(conn, tmp_path):
    gate, effect = tmp_path / "gate", tmp_path / "effect"
    slow = faas.function(wait_for_file, name="cancel_wait_for_gate", timeout=60, show=False)
    slow.deploy()
    # Open the websocket first, so draining the outbox writes the spawn's frame itself.
    assert faas.function(step, name="cancel_opens_websocket", show=False).spawn(1).result(60) == 2
    go, held, release = threading.Event(), threading.Event(), threading.Event()

    def send_then_hold():
        # On the IO thread: write the spawn's frame, then hold the thread before it can read
        # the server's ``accepted`` (both in one callback: no I/O is handled in between).
        go.wait(60)
        conn._drain_outbox()
        held.set()
        release.wait(60)
    conn._io_loop().call_soon_threadsafe(send_then_hold)
    fut = slow.spawn(str(gate), str(effect))
    go.set()
    assert held.wait(60)
    assert fut._request_id is None and not conn.withdraw(fut), "sent, and not accepted yet"
    result: "queue.Queue" = queue.Queue()
    canceller = threading.Thread(target=lambda: result.put(fut.cancel()))
    canceller.start()
    wait_until(lambda: fut._cancel_requested, what="cancel() to be under way")
    release.set()
    assert result.get(timeout=60) is True
    canceller.join(10)
    assert fut.cancelled()
    record = faas.Invocation.from_id(fut.request_id)
    assert record.status == "cancelled"
    assert not effect.exists()


def test_cancel_of_a_running_call_leaves_the_future_cancelled(conn, tmp_path):
    gate, effect = tmp_path / "gate", tmp_path / "effect"
    slow = faas.function(wait_for_file, name="cancel_running", timeout=60, show=False)
    fut = slow.spawn(str(gate), str(effect))
    wait_until(lambda: fut.status == "running", what="the invocation to start")
    assert fut.cancel() is True
    assert fut.cancelled() and fut.done()
    assert fut.cancel() is True  # as concurrent.futures: cancelling a cancelled future is True
    with pytest.raises(faas.Cancelled):
        fut.result()
    import concurrent.futures
    with pytest.raises(concurrent.futures.CancelledError):
        fut.exception()
    assert faas.Invocation.from_id(fut.request_id).status == "cancelled"
    assert not effect.exists()
    done, _ = faas.wait([fut], timeout=10)
    assert done == {fut}


def test_cancel_of_a_finished_call_is_false(conn):
    f_step = faas.function(step, name="cancel_finished", show=False)
    fut = f_step.spawn(1)
    assert fut.result(timeout=60) == 2
    assert fut.cancel() is False and not fut.cancelled()


# ---- layering -----------------------------------------------------------------------------

def _imports(path: Path, top_level: bool = False) -> set[str]:
    """The modules ``path`` imports, absolute: at any depth of the file (functions too), or
    only those its import loads (``top_level``)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    tree = ast.parse(path.read_text())
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_discovery_does_not_pull_in_the_websocket_client():
    imported = _imports(PACKAGE / "client" / "discovery.py", top_level=True)
    assert not {m for m in imported if m.startswith(("tornado", "jupyter_faas.client.connection",
                                                     "jupyter_faas.client.direct"))}, imported
    assert "jupyter_faas.client.connection" not in _imports(PACKAGE / "panel" / "backend.py")


def test_display_does_not_import_the_client():
    for path in (PACKAGE / "display").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("jupyter_faas.client")}, path


def test_the_display_reads_futures_only_through_their_public_api():
    for path in (PACKAGE / "display").glob("*.py"):
        text = path.read_text()
        for private in ("_observers", "_request_id", "_connection"):
            assert f".{private}" not in text, f"{path.name} reaches into fut.{private}"


def test_the_client_keeps_a_reference_to_every_task_it_starts():
    """A task nobody references may be collected mid-run (asyncio keeps only weak references):
    every task the client starts is assigned or handed to something that keeps it."""
    for path in (PACKAGE / "client").glob("*.py"):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("ensure_future", "create_task"):
                    assert isinstance(parents[node], (ast.Assign, ast.Call, ast.Return)), \
                        f"{path.name}:{node.lineno} starts a task and drops it"
