"""Sync calls over the direct Unix socket: used when local, token-checked, ordered, and re-attached."""

import os
import socket
import stat
import threading
import time

import pytest

import jupyter_faas as faas
from jupyter_faas.client import discovery
from kernel_workers import wire


def test_sync_calls_use_the_direct_socket_and_reuse_it(conn):
    @faas.function(name="direct_add")
    def add(a, b):
        print("adding", a, b)
        return a + b

    assert conn._direct is not None, conn.status
    assert add(1, 2) == 3
    (channel,) = conn._direct._free  # the call went over a direct channel and gave it back
    inv = add.invoke(3, 4)
    assert inv.result == 7 and inv.request_id
    assert conn._direct._free == [channel]
    assert any(line.startswith("START RequestId: " + inv.request_id) for line in inv.logs)
    assert "adding 3 4" in inv.logs
    assert inv.report.duration_ms > 0
    # the server recorded it like any other invocation
    row = conn.request("GET", f"/faas/api/invocations/{inv.request_id}")
    assert row["status"] == "succeeded"


def test_errors_come_back_the_same_over_the_direct_socket(conn):
    @faas.function(name="direct_fails")
    def fails():
        raise ValueError("bad input 42")

    with pytest.raises(ValueError, match="bad input 42"):
        fails()
    assert len(conn._direct._free) == 1


def test_the_direct_socket_is_private_and_needs_the_token(conn):
    path = conn.status["direct_socket"]
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    def first_answer(frame: bytes) -> dict:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(frame)
            channel = wire.BlockingChannel(sock)
            header, _ = channel.recv()
            with pytest.raises(EOFError):
                channel.recv()  # and the server hangs up
            return header

    refused = first_answer(wire.pack("hello", token="not-the-token"))
    assert refused["k"] == "rejected" and refused["error"]["errorType"] == "AccessDeniedException"
    skipped_hello = first_answer(wire.pack("invoke", b"x", function="direct_add", items=[[1, 1]]))
    assert skipped_hello["k"] == "rejected"
    # a stranger cannot make the server buffer a huge frame: only the length prefix is read
    huge = first_answer(wire.pack("hello", token=conn.token)[:wire.HEADER_SIZE - 4]
                        + (1 << 30).to_bytes(4, "big"))
    assert huge["k"] == "rejected" and huge["error"]["errorType"] == "RequestTooLargeException"


def test_without_the_direct_socket_calls_go_over_the_websocket(server, monkeypatch):
    monkeypatch.setenv("JUPYTER_FAAS_DIRECT", "0")
    conn = faas.connect(server.url, server.token)
    try:
        assert conn._direct is None

        @faas.function(name="via_ws")
        def inc(x):
            return x + 1
        assert inc(1) == 2
    finally:
        discovery.reset()


def test_a_sync_call_waits_behind_a_spawn_made_before_it(conn):
    # f.spawn(1); f(2): 1 reaches the server first although the two go different ways.
    @faas.function(name="ordered", concurrency=1, timeout=30)
    def stamp(x):
        time.sleep(0.2)
        return time.time()

    first = stamp.spawn(1)
    second_done = stamp(2)
    assert first.result(30) < second_done


def test_a_direct_call_reattaches_after_the_server_restarts(make_server, monkeypatch):
    server = make_server("--FaaSServer.max_concurrency=1", "--FaaSServer.throttle_wait=60")
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    for key in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(key, server.env[key])
    conn = faas.connect()
    old_socket = conn.status["direct_socket"]
    try:
        @faas.function(timeout=60, name="restart_me")
        def nap(seconds):
            time.sleep(seconds)
            return seconds

        blocker = nap.spawn(30)  # holds the only slot, so the sync call below queues
        results = []
        caller = threading.Thread(target=lambda: results.append(nap.invoke(0.1)))
        caller.start()
        deadline = time.monotonic() + 20
        while sorted(i.status for i in faas.invocations(function="restart_me")) != ["queued", "running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.1)  # the queued call has heard its request id

        server.kill()
        server.start()
        caller.join(60)
        assert not caller.is_alive(), "the sync call never learned how it ended"
        (inv,) = results
        assert inv.status == "succeeded" and inv.result == 0.1  # re-queued by the new server
        assert "Invoke it again" in str(blocker.exception(30))
        assert conn._direct is not None and conn._direct.path != old_socket
        assert nap(0) == 0  # and later calls use the new server's socket
        assert len(conn._direct._free) == 1
    finally:
        discovery.reset()


def test_a_late_done_on_the_socket_is_never_taken_for_the_next_call(conn):
    """The server may send a done on a direct socket after its user stopped waiting (a map
    gives its socket back while the server still follows an item its environment answered
    first).  The next sync call on that socket reads it before its own: it must not take it
    for its own end (a trivial call once failed with a map item's OutOfMemory)."""
    from jupyter_faas.client import waiting
    from conftest import wait_for

    @faas.function(name="direct_earlier")
    def earlier():
        raise ValueError("the earlier call's failure")

    @faas.function(name="direct_next")
    def next_call(x):
        return x + 1

    fut = earlier.spawn()
    assert isinstance(fut.exception(timeout=30), ValueError)
    earlier_rid = fut.request_id
    next_call.deploy()
    channel = conn._direct.take()
    channel.channel.send("watch", request_ids=[earlier_rid], logs=False)  # answered from the store
    wait_for(lambda: waiting.readable([channel.sock], 0), 10, what="the late done")
    conn._direct.give_back(channel)  # the next call takes it (the last one given back)

    assert next_call(1) == 2
    assert next_call(2) == 3
