"""Ctrl-C cancels what a blocking call started; killing the server loses no accepted invocation."""

import _thread
import asyncio
import json
import sqlite3
import os
import signal
import threading
import time
import urllib.request

import psutil
import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def ctrl_c():
    """What Ctrl-C (or a kernel interrupt) does: SIGINT to this process."""
    os.kill(os.getpid(), signal.SIGINT)


def ctrl_c_when(ready, timeout=30):
    """Ctrl-C as soon as ``ready()`` holds (cold starts are slow on a loaded machine)."""
    def watch():
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        ctrl_c()
    threading.Thread(target=watch, daemon=True).start()


def interrupt_from_a_thread_when(ready):
    """What a kernel's subshell or a watchdog thread does: ``_thread.interrupt_main()`` once
    ``ready()`` holds.  Unlike a real SIGINT it breaks no system call: it only sets a flag the
    main thread sees when it next runs bytecode, so a wait blocked in C does not see it."""
    def watch():
        wait_for(ready, what="the call running")
        _thread.interrupt_main()
    threading.Thread(target=watch, daemon=True).start()


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid, seconds=5):
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def record_pid_then_sleep(path):
    """A long invocation that tells the test which process runs it."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(50)


def test_ctrl_c_kills_the_running_invocation_and_client_stays_usable(conn, tmp_path):
    marker = tmp_path / "pid"

    long_running = faas.function(record_pid_then_sleep, timeout=60, name="long_running")

    ctrl_c_when(lambda: marker.exists() and marker.read_text())
    with pytest.raises(KeyboardInterrupt):
        long_running(str(marker))  # it sleeps 50 s: ending now, cancelled, is the point
    assert _wait_dead(int(marker.read_text()))
    rows = conn.request("GET", "/faas/api/invocations", params={"function": "long_running"})
    assert [r["status"] for r in rows["invocations"]] == ["cancelled"]
    assert "was cancelled while running" in rows["invocations"][0]["error"]["errorMessage"]

    @faas.function(name="after_cancel")
    def after(x):
        return x + 1
    assert after(1) == 2


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_ctrl_c_during_map_drops_queued_and_kills_running(conn, leases):
    conn.use_leases = leases
    name = f"slow_map_{'leased' if leases else 'server'}"

    @faas.function(timeout=60, concurrency=2, name=name)
    def slow(x):
        time.sleep(30)
        return x

    def two_running():
        rows = conn.request("GET", "/faas/api/invocations", params={"function": name})
        return sum(r["status"] == "running" for r in rows["invocations"]) == 2
    ctrl_c_when(two_running)
    with pytest.raises(KeyboardInterrupt):
        slow.map(range(6))
    rows = wait_for(lambda: (lambda rs: rs if rs and all(r["status"] == "cancelled" for r in rs) else None)(
        conn.request("GET", "/faas/api/invocations", params={"function": name})["invocations"]),
        what="every recorded item cancelled")
    errors = sorted(r["error"]["errorMessage"] for r in rows)
    assert sum("while running" in e for e in errors) == 2
    if leases:
        # the four behind the cap (reserved concurrency 2: two leases) never started: through
        # leased environments that is never accepted, so never recorded
        assert len(rows) == 2, rows
    else:
        assert len(rows) == 6, rows
        assert sum("before it started" in e for e in errors) == 4


def test_an_interrupt_raised_from_another_thread_stops_a_map(conn, tmp_path):
    # a map must not wait in one call that never returns
    marker = tmp_path / "started"

    @faas.function(timeout=60, name="interrupted_map")
    def slow(x, marker=str(marker)):
        open(marker, "w").close()
        time.sleep(30)
        return x

    interrupt_from_a_thread_when(marker.exists)
    with pytest.raises(KeyboardInterrupt):
        slow.map(range(4), concurrency=2)
    wait_for(lambda: all(r["status"] == "cancelled" for r in conn.request(
        "GET", "/faas/api/invocations", params={"function": "interrupted_map"})["invocations"]),
        what="what ran cancelled")


def _napper(name):
    @faas.function(timeout=60, name=name)
    def nap(marker, seconds):
        open(marker, "w").close()
        time.sleep(seconds)
        return seconds
    return nap


def _waited_on(marker, seconds=0.5):
    """The call started ``seconds`` ago, so its caller is past the frames that start it and is
    blocked waiting for its end (an interrupt while it still runs Python is seen anyway)."""
    return marker.exists() and time.time() - marker.stat().st_mtime >= seconds


def _newest(conn, name):
    return conn.request("GET", "/faas/api/invocations", params={"function": name, "limit": 1})["invocations"][0]


def _leased(conn, name):
    return any(function == name for channel in conn._direct._free for function, _ in channel.leases)


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
@pytest.mark.parametrize("how", ["call", "invoke"])
def test_an_interrupt_raised_from_another_thread_cancels_a_sync_call(conn, tmp_path, how, leases):
    # as a real Ctrl-C does: the wait ends with KeyboardInterrupt and the invocation is cancelled
    conn.use_leases = leases
    name = f"interrupted_{how}_{'leased' if leases else 'server'}"
    nap = _napper(name)
    warm = str(tmp_path / "warm")
    nap(warm, 0)
    nap(warm, 0)  # a function's second call asks for a lease; the later ones go through it
    assert _leased(conn, name) is leases
    marker = tmp_path / "started"
    interrupt_from_a_thread_when(lambda: _waited_on(marker))
    with pytest.raises(KeyboardInterrupt):
        if how == "call":
            nap(str(marker), 30)
        else:
            nap.invoke(str(marker), 30)
    wait_for(lambda: _newest(conn, name)["status"] == "cancelled", what="the call cancelled")


def test_an_interrupt_is_raised_even_when_the_direct_socket_breaks_while_cancelling(make_server, monkeypatch,
                                                                                    tmp_path):
    # the server does not answer the cancel (stopped here): the socket is given up on and the
    # call followed over the websocket, and the interrupt is still raised (it returned normally)
    from jupyter_faas.client import direct
    monkeypatch.setattr(direct, "CANCEL_WAIT_S", 1.0)
    server = make_server()
    conn = faas.connect(server.url, server.token)
    conn.use_leases = False
    try:
        nap = _napper("interrupted_unanswered")
        marker = tmp_path / "started"

        def stop_then_interrupt():
            wait_for(lambda: _waited_on(marker), what="the call running")
            server.proc.send_signal(signal.SIGSTOP)
            try:
                _thread.interrupt_main()
                wait_for(lambda: conn._direct is None, what="the direct socket given up on")
            finally:
                server.proc.send_signal(signal.SIGCONT)
        threading.Thread(target=stop_then_interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            nap(str(marker), 30)
        wait_for(lambda: _newest(conn, "interrupted_unanswered")["status"] == "cancelled",
                 what="the call cancelled")
    finally:
        discovery.reset()


WAITS = {
    "result": lambda fut: fut.result(),
    "exception": lambda fut: fut.exception(),
    "faas.wait": lambda fut: faas.wait([fut]),
    "as_completed": lambda fut: list(faas.as_completed([fut])),
    "Invocation.wait": lambda fut: faas.Invocation.from_id(fut.request_id).wait(),
}


@pytest.mark.parametrize("wait", WAITS)
def test_an_interrupt_raised_from_another_thread_stops_waiting_for_a_future(conn, tmp_path, wait):
    name = "interrupted_" + wait.replace(".", "_").lower()
    nap = _napper(name)
    marker = tmp_path / "started"
    fut = nap.spawn(str(marker), 30)
    interrupt_from_a_thread_when(lambda: _waited_on(marker))
    with pytest.raises(KeyboardInterrupt):
        WAITS[wait](fut)
    if wait in ("faas.wait", "as_completed"):  # they cancel what they were waiting for
        assert fut.cancelled() or not fut.done()
        wait_for(lambda: _newest(conn, name)["status"] == "cancelled", what="the future cancelled")
    else:  # only the wait stopped, as with a real Ctrl-C (and concurrent.futures)
        assert not fut.done()
        assert _newest(conn, name)["status"] == "running"
        faas.Invocation.from_id(fut.request_id).cancel()
        wait_for(lambda: _newest(conn, name)["status"] == "cancelled", what="the call cancelled")


def test_an_interrupt_raised_from_another_thread_stops_a_wait_for_the_server(conn):
    # every REST call waits so (faas.invocations(), a deploy, provision(wait=...))
    ended = []

    async def slow():
        await asyncio.sleep(20)
        ended.append(True)
    started = time.monotonic()
    interrupt_from_a_thread_when(lambda: time.monotonic() - started >= 0.5)
    with pytest.raises(KeyboardInterrupt):
        conn.run(slow())
    assert not ended


def test_future_cancel_kills_running_invocation(conn, tmp_path):
    marker = tmp_path / "pid"

    cancel_me = faas.function(record_pid_then_sleep, timeout=60, name="cancel_me")

    fut = cancel_me.spawn(str(marker))
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fut.cancel() is True
    with pytest.raises(faas.Cancelled):
        fut.result()
    assert _wait_dead(int(marker.read_text()))


def _rest(server, method, path, body=None):
    req = urllib.request.Request(server.url + path, data=body, method=method,
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read() or b"null")


def test_killing_the_server_loses_no_accepted_invocation(make_server):
    server = make_server("--FaaSServer.max_concurrency=1")
    faas.connect(server.url, server.token)
    try:
        # retries=0: an Event invocation running at a kill is otherwise retried (Lambda's
        # at-least-once; tests/test_async_invocation.py); with none left it is failed
        @faas.function(timeout=30, name="durable", retries=0)
        def durable(event):
            time.sleep(event["s"])
            return {"slept": event["s"]}
        durable.deploy()
    finally:
        discovery.reset()
    running = _rest(server, "POST", "/faas/api/functions/durable/invocations?type=Event", b'{"s": 20}')
    queued = [_rest(server, "POST", "/faas/api/functions/durable/invocations?type=Event",
                    json.dumps({"s": 0.1}).encode()) for _ in range(2)]
    deadline = time.monotonic() + 10
    while _rest(server, "GET", f"/faas/api/invocations/{running['request_id']}")["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    kids = server.kill()  # SIGKILL: no chance to clean up
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, f"environments outlived the killed server: {alive}"

    server.start()  # same data dir
    deadline = time.monotonic() + 30
    while True:
        rows = {r["request_id"]: r for r in _rest(server, "GET", "/faas/api/invocations?function=durable")["invocations"]}
        if all(rows[q["request_id"]]["status"] == "succeeded" for q in queued):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    assert len(rows) == 3
    lost = rows[running["request_id"]]
    assert lost["status"] == "failed" and lost["error_type"] == "Runtime.ServerStopped"
    assert "Invoke it again" in lost["error"]["errorMessage"]


def test_a_graceful_stop_starts_nothing_more_and_blames_no_function(make_server):
    """`jupyter faas stop` (SIGTERM) mid-flow: queued invocations stay queued (none is sent to
    an environment being stopped), running ones are left to the next start, which fails them
    Runtime.ServerStopped as after a crash; no run is reported as the function's crash."""
    server = make_server("--FaaSServer.max_concurrency=2")
    faas.connect(server.url, server.token)
    try:
        @faas.function(timeout=30, name="stopped", retries=0)
        def stopped(event):
            time.sleep(event["s"])
            return {"slept": event["s"]}
        stopped.deploy()
    finally:
        discovery.reset()
    sent = [_rest(server, "POST", "/faas/api/functions/stopped/invocations?type=Event",
                  json.dumps({"s": 20 if i < 2 else 0.05}).encode()) for i in range(8)]
    wait_for(lambda: sum(_rest(server, "GET", f"/faas/api/invocations/{s['request_id']}")["status"]
                         == "running" for s in sent) == 2, timeout=30, what="two running")

    server.stop()  # SIGTERM: the graceful stop
    db = sqlite3.connect(server.base / "data" / "faas" / "faas.sqlite")
    statuses = dict(db.execute("SELECT request_id, status FROM invocations WHERE function='stopped'"))
    db.close()
    assert sorted(statuses.values()) == ["queued"] * 6 + ["running"] * 2, statuses

    server.start()  # same data dir: the queued ones run, the running ones are settled
    def settled():
        rows = {r["request_id"]: r for r in
                _rest(server, "GET", "/faas/api/invocations?function=stopped")["invocations"]}
        return rows if all(r["status"] in ("succeeded", "failed") for r in rows.values()) else None
    rows = wait_for(settled, timeout=60, what="every invocation ended after the restart")
    assert len(rows) == 8
    for s in sent[2:]:
        assert rows[s["request_id"]]["status"] == "succeeded"
    for s in sent[:2]:
        assert rows[s["request_id"]]["error_type"] == "Runtime.ServerStopped"


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_a_client_reattaches_its_futures_after_the_server_restarts(make_server, monkeypatch, leases):
    server = make_server("--FaaSServer.max_concurrency=1")
    # discovered through the runtime file, as a kernel finds it
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    for key in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(key, server.env[key])
    conn = faas.connect()
    conn.use_leases = leases
    assert conn.url == server.url and conn.rediscover
    try:
        @faas.function(timeout=60, name="survivor")
        def survivor(seconds):
            time.sleep(seconds)
            return seconds

        results = []
        mapper = threading.Thread(target=lambda: results.append(
            survivor.map([30, 0.1, 0.2], return_exceptions=True, show=False)))
        mapper.start()
        deadline = time.monotonic() + 15
        # through the server, all three are recorded at once (one running, two queued); through
        # a lease (the one slot), an item is recorded when its environment starts it
        expected = {"running"} if leases else {"running", "queued"}
        while {i.status for i in faas.invocations(function="survivor")} != expected:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        server.kill()
        server.start()   # same data dir (and port: it is free); a new process
        mapper.join(60)
        assert not mapper.is_alive(), "the map never learned how its items ended"
        first, second, third = results[0]
        # the running item may have run partly: it failed, saying so; the queued ones ran
        assert isinstance(first, faas.FaaSError) and "Invoke it again" in str(first)
        assert (second, third) == (0.1, 0.2)
        assert conn.url == server.url
    finally:
        discovery.reset()


def _sleepy(x):
    import time
    time.sleep(0.3)
    return x


def test_a_map_survives_its_server_being_killed_the_client_starts_a_new_one(make_server, monkeypatch):
    """A client that found its server through the runtime file, as a notebook does, starts a
    new one when it dies mid-map (the first client to need a server starts it), re-attaches,
    and the map ends: what had not started runs on the new server; what was running when the
    server died ends with ServerError (it may have run partly), not as the handler's error."""
    import concurrent.futures

    from jupyter_faas import paths
    server = make_server()
    for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(server.base / sub))
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    faas.connect()  # through the runtime file
    f = faas.function(_sleepy, name="survivor", timeout=30, show=False)
    new_pid = None
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mapped = pool.submit(f.map, range(20), concurrency=2, return_exceptions=True)
            wait_for(lambda: len(faas.invocations(function="survivor", status="succeeded")) >= 2,
                     what="two items done")
            server.kill()
            results = mapped.result(timeout=180)
        new_pid = paths.read_runtime_file()["pid"]
        assert new_pid != server.proc.pid
        failed = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(e, faas.ServerError) and "may have run partly" in str(e) for e in failed), failed
        assert len(failed) <= 2   # at most the two running at the kill
        assert [r for r in results if not isinstance(r, Exception)] == \
            [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    finally:
        discovery.reset()
        if new_pid is not None:
            proc = psutil.Process(new_pid)
            kids = proc.children(recursive=True)
            os.kill(new_pid, signal.SIGTERM)
            psutil.wait_procs([proc, *kids], timeout=20)


def _echo(x):
    return x


def _through_runtime_file(monkeypatch, server):
    """This process finds ``server`` as a kernel does: through the runtime file."""
    for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(server.base / sub))
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    monkeypatch.delenv("JUPYTER_FAAS_TOKEN", raising=False)


def _forget_port():
    """The next start of the server this process finds (``_through_runtime_file``) binds a new
    port: a restart binds the last one when it is free."""
    from jupyter_faas import paths
    from jupyter_faas.server.app import LAST_PORT_FILE
    (paths.data_dir() / LAST_PORT_FILE).unlink()


def _stop_started_server(old_pid):
    """Stop the server a client started (the runtime file's, if it is not ``old_pid``)."""
    from jupyter_faas import paths
    info = paths.read_runtime_file()
    if not info or info["pid"] == old_pid or not _alive(info["pid"]):
        return
    proc = psutil.Process(info["pid"])
    kids = proc.children(recursive=True)
    proc.terminate()
    gone, alive = psutil.wait_procs([proc, *kids], timeout=20)
    assert not alive, f"processes outlived the server the client started: {alive}"


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_an_idle_client_calls_the_server_that_replaced_its_own(make_server, monkeypatch, leases):
    """The server dies while this client has nothing in flight, and another process starts the
    next one: the client's next call finds it through the runtime file (its old URL is dead)."""
    server = make_server()
    _through_runtime_file(monkeypatch, server)
    conn = faas.connect()
    conn.use_leases = leases
    f = faas.function(_echo, name="idle", timeout=30, show=False)
    try:
        assert (f(1), f(2)) == (1, 2)  # the second through a lease, when leases are on
        old_url = server.url
        server.kill()
        _forget_port()  # its port was taken meanwhile: the next server binds another
        server.start()  # same data dir, a new process and port: someone else restarted it
        assert server.url != old_url
        assert f(3) == 3
        assert conn.url == server.url
        assert [i.status for i in faas.invocations(function="idle")] == ["succeeded"] * 3
        assert f.map([4, 5], show=False) == [4, 5]
    finally:
        discovery.reset()


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_an_idle_client_whose_server_died_starts_the_next_one(make_server, monkeypatch, leases):
    """Nobody restarts it: the client's next call starts a server, as a first call does."""
    from jupyter_faas import paths
    server = make_server()
    _through_runtime_file(monkeypatch, server)
    conn = faas.connect()
    conn.use_leases = leases
    f = faas.function(_echo, name="idle", timeout=30, show=False)
    old_pid = server.proc.pid
    try:
        assert (f(1), f(2)) == (1, 2)
        server.kill()
        assert f(3) == 3
        info = paths.read_runtime_file()
        assert info["pid"] != old_pid and conn.url == info["url"]
        assert {i.status for i in faas.invocations(function="idle")} == {"succeeded"}
    finally:
        discovery.reset()
        _stop_started_server(old_pid)


def test_a_client_given_the_address_says_so_when_that_server_is_gone(make_server, monkeypatch):
    """faas.connect(url, token) keeps meaning that server: a call fails, saying what to do,
    and starts nothing."""
    from jupyter_faas import paths
    server = make_server()
    _through_runtime_file(monkeypatch, server)
    faas.connect(server.url, server.token)
    f = faas.function(_echo, name="given", timeout=30, show=False)
    try:
        assert f(1) == 1
        server.kill()
        with pytest.raises(faas.ServerError) as err:
            f(2)
        assert server.url in str(err.value) and "faas.connect()" in str(err.value)
        with pytest.raises(faas.ServerError, match="faas.connect"):
            faas.invocations(function="given")
        assert paths.read_runtime_file()["pid"] == server.proc.pid  # nothing was started
    finally:
        discovery.reset()


def _item_and_its_id(event, context):
    import time
    time.sleep(0.02)
    return event, context.aws_request_id


def test_a_stop_during_a_leased_map_runs_its_unstarted_items_on_the_next_server(make_server, monkeypatch):
    """`jupyter faas stop` while a map runs through leases: the items that never started run on
    the next server (here the one the client starts, as nobody else does), each with its row;
    only those running at the stop fail, as on the server's path (ServerStopped)."""
    import concurrent.futures
    server = make_server()
    _through_runtime_file(monkeypatch, server)
    conn = faas.connect()
    f = faas.function(_item_and_its_id, name="stopped_map", timeout=30, show=False)
    old_pid = server.proc.pid
    n = 400

    def stored(status=None):
        return conn.request("GET", "/faas/api/invocations",
                            params={"function": "stopped_map", "status": status, "limit": 1000})["invocations"]
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mapped = pool.submit(f.map, range(n), concurrency=2, return_exceptions=True)
            wait_for(lambda: len(stored("succeeded")) >= 10, what="ten items done")
            assert conn.leased_maps, "the map should run through leases"
            server.stop()  # SIGTERM, as `jupyter faas stop`; nobody restarts it
            results = mapped.result(timeout=180)
        failed = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(e, faas.ServerStopped) and isinstance(e, faas.ServerError)
                   and "may have run partly" in str(e) for e in failed), failed
        for e in failed:  # each names its invocation, stored as the server's stop
            row = conn.request("GET", f"/faas/api/invocations/{e.request_id}")
            assert row["error_type"] == "Runtime.ServerStopped", row
        assert len(failed) <= 2  # at most the two running at the stop
        ok = [r for r in results if not isinstance(r, Exception)]
        assert [x for x, _ in ok] == [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        from jupyter_faas import paths
        info = paths.read_runtime_file()  # the server this client started in its place
        assert info["pid"] != old_pid and conn.url == info["url"]
        rows = {r["request_id"]: r["status"] for r in stored()}
        assert len(rows) == n
        assert all(rows.get(rid) == "succeeded" for _, rid in ok)
    finally:
        discovery.reset()
        _stop_started_server(old_pid)


def test_ctrl_c_cancels_a_server_path_map_of_tens_of_thousands_of_items(conn):
    """Ctrl-C during a map of 30,000 items on the server's path (a Dask cluster's, or leases off):
    every accepted item is cancelled.  Its request ids went in one cancel frame past the wire's
    1 MB header cap, the server refused it, and 29,000 items stayed queued to run."""
    conn.use_leases = False

    @faas.function(timeout=60, name="huge_server_map")
    def slow(x):
        time.sleep(30)
        return x

    def all_accepted():
        status = conn.request("GET", "/faas/api/status")
        return status["running"] + status["queued"] >= 30_000
    ctrl_c_when(all_accepted, timeout=120)
    with pytest.raises(KeyboardInterrupt):
        slow.map(range(30_000), concurrency=2, show=False)
    wait_for(lambda: conn.request("GET", "/faas/api/status")["queued"] == 0
             and conn.request("GET", "/faas/api/status")["running"] == 0,
             timeout=60, what="nothing of the map queued or running")
    left = conn.request("GET", "/faas/api/invocations",
                        params={"function": "huge_server_map", "status": "queued", "limit": 5})
    assert left["invocations"] == []
    cancelled = conn.request("GET", "/faas/api/invocations",
                             params={"function": "huge_server_map", "status": "cancelled", "limit": 1000})
    assert len(cancelled["invocations"]) == 1000


def test_request_id_frames_stay_under_the_header_cap():
    from jupyter_faas.client.connection import id_frames
    from kernel_workers import wire
    rids = [f"01a22d87-ad38-75dc-ad8b-{i:012d}" for i in range(55_000)]
    frames = id_frames("watch", rids, logs=True)
    assert len(frames) == 6
    got = []
    for frame in frames:
        header, _ = wire.unpack(frame)  # refuses a header over wire.MAX_HEADER_BYTES
        assert header["k"] == "watch" and header["logs"] is True
        got += header["request_ids"]
    assert got == rids


def test_a_server_path_maps_concurrency_holds_on_the_server_that_replaced_a_killed_one(make_server, monkeypatch):
    """A map with ``concurrency=2`` on the server's path (leases off, or a Dask cluster's)
    whose server is killed: the next server runs its queued items two at a time still (the
    cap lived only in the killed server's memory, so they all started at once)."""
    import concurrent.futures

    server = make_server()
    _through_runtime_file(monkeypatch, server)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    conn = faas.connect()
    conn.use_leases = False
    f = faas.function(_sleepy, name="capped_survivor", timeout=30, show=False)
    old_pid = server.proc.pid
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mapped = pool.submit(f.map, range(24), concurrency=2, return_exceptions=True)
            wait_for(lambda: len(faas.invocations(function="capped_survivor", status="succeeded")) >= 2,
                     what="two items done")
            server.kill()
            results = mapped.result(timeout=180)
        assert sum(not isinstance(r, Exception) for r in results) >= 20
        rows = [r for r in conn.request("GET", "/faas/api/invocations", params={
            "function": "capped_survivor", "status": "succeeded", "limit": 100})["invocations"]]
        events = sorted([(r["started_at"], 1) for r in rows] + [(r["ended_at"], -1) for r in rows])
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        assert most <= 2, f"{most} items of a map with concurrency=2 ran at once"
    finally:
        discovery.reset()
        _stop_started_server(old_pid)


def _slow_item(x):
    import time
    time.sleep(0.3)
    return x


def test_a_leased_map_that_fails_for_a_server_stop_cancels_the_rest_on_the_next_server(make_server, monkeypatch):
    """A stop while a map runs through leases fails the items that were running (ServerStopped);
    the map raises that and cancels the rest, which the next server holds.  It used to wait for
    them all to run there, then say it had cancelled them: a retry ran them twice."""
    import concurrent.futures
    server = make_server()
    _through_runtime_file(monkeypatch, server)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    conn = faas.connect()
    f = faas.function(_slow_item, name="stop_then_cancel", timeout=30, show=False)
    old_pid = server.proc.pid
    n = 300

    def stored(status=None):
        return conn.request("GET", "/faas/api/invocations", params={
            "function": "stop_then_cancel", "status": status, "limit": 1000})["invocations"]
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mapped = pool.submit(f.map, range(n), concurrency=4)
            wait_for(lambda: len(stored("succeeded")) >= 8, what="eight items done")
            assert conn.leased_maps, "the map should run through leases"
            server.stop()
            with pytest.raises(faas.ServerStopped) as info:
                mapped.result(timeout=180)
        assert info.value.request_id
        note = next(n for n in info.value.__notes__ if n.startswith("the map cancelled the "))
        wait_for(lambda: not stored("queued") and not stored("running"), timeout=60,
                 what="nothing of the map left queued or running on the next server")
        rows = stored()
        by_status = {s: sum(r["status"] == s for r in rows) for s in ("succeeded", "failed", "cancelled")}
        assert by_status["succeeded"] < n - by_status["failed"], f"every item ran: {by_status}; {note}"
        assert by_status["cancelled"] >= 1, by_status
    finally:
        discovery.reset()
        _stop_started_server(old_pid)
