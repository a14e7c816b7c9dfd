"""The leased warm path: sync calls and maps straight to a leased environment, recorded in its
journal, with every promise of the server's own path (rows, REPORT, logs, limits, cancel,
crash recovery).  Real servers, real environments."""

import os
import signal
import sqlite3
import threading
import time

import pytest

import jupyter_faas as faas
from jupyter_faas import errors
from jupyter_faas.client import discovery

from conftest import map_futures, wait_for


def _leases(conn) -> int:
    return conn.request("GET", "/faas/api/status")["leases"]


def _lease_of(conn, name):
    pool = conn._direct
    for channel in pool._free:
        for (function, _), lease in channel.leases.items():
            if function == name:
                return lease
    return None


def _row_or_none(conn, rid):
    try:
        return conn.request("GET", f"/faas/api/invocations/{rid}")
    except errors.ResourceNotFound:
        return None


def test_a_function_called_again_is_called_through_a_lease_and_recorded_the_same(conn):
    @faas.function(name="leased_add")
    def add(a, b):
        print("adding", a, b)
        return a + b

    assert add(1, 2) == 3  # the server's way; the second call asks for a lease
    invs = [add.invoke(i, 10) for i in range(5)]
    assert _lease_of(conn, "leased_add") is not None, "no lease was taken"
    assert _leases(conn) >= 1
    for i, inv in enumerate(invs):
        assert inv.result == i + 10
        assert f"adding {i} 10" in inv.logs
        assert inv.logs[0].startswith(f"START RequestId: {inv.request_id}")
        assert inv.logs[-1].startswith(f"REPORT RequestId: {inv.request_id}")
        assert inv.report.duration_ms >= 0 and inv.report.billed_duration_ms >= 1
    # read right after: the server folded the journal before answering
    row = conn.request("GET", f"/faas/api/invocations/{invs[-1].request_id}")
    assert row["status"] == "succeeded" and row["input_summary"].startswith("pickled arguments, ")
    assert row["billed_duration_ms"] == invs[-1].report.billed_duration_ms
    assert row["max_memory_used_mb"] == invs[-1].report.max_memory_used_mb
    lines = [entry["line"] for entry in conn.request(
        "GET", f"/faas/api/invocations/{invs[-1].request_id}/logs")["logs"]]
    assert lines == invs[-1].logs  # the store has what the client got, line for line


def _lines(conn, rid, **params):
    return conn.request("GET", f"/faas/api/invocations/{rid}/logs", params=params)["logs"]


def _shape(lines, rid):
    """A log's lines with what differs between two invocations (ids, figures) taken out."""
    import re
    return [re.sub(r"[0-9.]+ (ms|MB)", r"N \1", line["line"].replace(rid, "RID")) for line in lines]


def test_a_leased_invocations_platform_lines_are_those_the_servers_path_writes(conn):
    @faas.function(name="leased_lines")
    def shout(x):
        print("line", 1)
        print("line", 2)
        if x < 0:
            raise ValueError("negative")
        return x

    conn.use_leases = False
    shout(0)  # the cold start (its INIT lines): the ones compared are warm
    server_ok, server_bad = shout.invoke(1), shout.invoke(-1)
    conn.use_leases = True
    shout(1)
    leased_ok, leased_bad = shout.invoke(1), shout.invoke(-1)
    assert _lease_of(conn, "leased_lines") is not None, "no lease was taken"
    for server_inv, leased_inv in ((server_ok, leased_ok), (server_bad, leased_bad)):
        server_inv.wait(), leased_inv.wait()
        assert _shape(_lines(conn, leased_inv.request_id), leased_inv.request_id) == \
            _shape(_lines(conn, server_inv.request_id), server_inv.request_id)
    made = _lines(conn, leased_bad.request_id)
    assert [line["stream"] for line in made] == ["platform", "stdout", "stdout", "platform", "platform", "platform"]
    assert made[3]["line"] == "[ERROR] ValueError: negative"
    assert made[-1]["line"].startswith(f"REPORT RequestId: {leased_bad.request_id}\tDuration: ")
    row = conn.request("GET", f"/faas/api/invocations/{leased_bad.request_id}")
    assert made[0]["ts"] == row["started_at"] and made[-1]["ts"] == row["ended_at"]
    # paged one line at a time, a reader gets the same lines once each, then nothing
    paged, after = [], 0
    while page := _lines(conn, leased_bad.request_id, after=after, limit=1):
        paged += page
        after = page[-1]["id"]
    assert paged == made
    assert _lines(conn, leased_bad.request_id, after=made[2]["id"]) == made[3:]


def test_a_leased_call_that_raises_fails_as_on_the_server_path(conn):
    @faas.function(name="leased_raises")
    def check(x):
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x

    assert check(1) == 1
    assert check(2) == 2
    assert _lease_of(conn, "leased_raises") is not None
    with pytest.raises(ValueError, match="negative: -5"):
        check(-5)
    inv = check.invoke(-6)
    assert inv.status == "failed"
    row = conn.request("GET", f"/faas/api/invocations/{inv.request_id}")
    assert row["status"] == "failed" and row["error_type"] == "ValueError"


def test_a_long_leased_call_streams_lines_and_is_killed_at_its_timeout(conn):
    @faas.function(name="leased_slow", timeout=1)
    def slow(seconds):
        print("started", flush=True)
        time.sleep(seconds)
        return seconds

    assert slow(0) == 0
    assert slow(0) == 0
    assert _lease_of(conn, "leased_slow") is not None
    inv = slow.invoke(30)
    assert inv.status == "timed_out" and isinstance(inv.error, errors.InvocationTimeout)
    assert "started" in inv.logs  # its line, read by the server while it ran
    row = conn.request("GET", f"/faas/api/invocations/{inv.request_id}")
    assert row["status"] == "timed_out", row
    assert 1000 <= row["duration_ms"] < 5000
    with pytest.raises(errors.InvocationTimeout):
        slow(30)
    # the environment was killed with its call; the next call works (the server's way, or a new lease)
    assert slow(0) == 0


def test_a_leased_call_over_its_memory_is_out_of_memory(conn):
    @faas.function(name="leased_hog", memory=128)
    def hog(mb):
        block = bytearray(mb << 20)
        block[::4096] = b"x" * len(block[::4096])
        return len(block)

    assert hog(1) == 1 << 20
    assert hog(1) == 1 << 20
    assert _lease_of(conn, "leased_hog") is not None
    with pytest.raises(errors.OutOfMemory):
        hog(400)
    assert hog(1) == 1 << 20


def test_cancelling_a_running_leased_call_kills_it_and_records_it_cancelled(conn):
    @faas.function(name="leased_cancel")
    def wait(seconds):
        time.sleep(seconds)
        return seconds

    assert wait(0) == 0
    assert wait(0) == 0
    assert _lease_of(conn, "leased_cancel") is not None
    # Ctrl-C while the sync call waits
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wait(60)
    row = conn.request("GET", "/faas/api/invocations",
                       params={"function": "leased_cancel", "limit": 1})["invocations"][0]
    assert row["status"] == "cancelled", row
    assert wait(0) == 0


def test_a_map_runs_through_leases_with_one_row_and_report_per_item(conn, server):
    @faas.function(name="leased_map")
    def square(x):
        return x * x

    assert square.map(range(10)) == [x * x for x in range(10)]
    before = time.time()
    assert square.map(range(500), show=False) == [x * x for x in range(500)]
    db = sqlite3.connect(server.base / "data" / "faas" / "faas.sqlite")
    rows = wait_for(lambda: db.execute(
        "SELECT count(*), count(DISTINCT request_id), min(billed_duration_ms) FROM invocations "
        "WHERE function='leased_map' AND created_at >= ? AND status='succeeded'", (before,)).fetchone()
        if conn.request("GET", "/faas/api/invocations", params={"limit": 1}) else None)
    assert rows[0] == 500 and rows[1] == 500 and rows[2] >= 1
    rids = {r[0] for r in db.execute("SELECT request_id FROM invocations WHERE function='leased_map' "
                                     "AND created_at >= ?", (before,))}
    lines = conn.request("GET", "/faas/api/functions/leased_map/logs", params={"limit": 5000})["logs"]
    reported = [line["request_id"] for line in lines if line["line"].startswith("REPORT RequestId: ")
                and line["request_id"] in rids]
    assert sorted(reported) == sorted(rids)  # one REPORT each, in the function's log stream


def test_a_map_item_that_fails_raises_with_its_index(conn):
    @faas.function(name="leased_map_fails")
    def inverse(x):
        return 1 / x

    assert inverse.map([1, 2]) == [1, 0.5]
    with pytest.raises(ZeroDivisionError) as info:
        inverse.map([1, 2, 0, 4] * 50, show=False)
    assert "2" in str(info.value) or "index" in str(info.value).lower() or info.value.__notes__
    got = inverse.map([1, 2, 0], return_exceptions=True, show=False)
    assert got[:2] == [1, 0.5] and isinstance(got[2], ZeroDivisionError)


def test_a_lease_gives_its_slot_back_when_another_call_waits(make_server):
    server = make_server("--FaaSServer.max_concurrency=1", "--FaaSServer.throttle_wait=5")
    conn = faas.connect(server.url, server.token)
    try:
        @faas.function(name="lease_holder")
        def one(x):
            return x

        @faas.function(name="lease_waiter")
        def other(x):
            return -x

        assert one(1) == 1
        assert one(2) == 2
        assert _lease_of(conn, "lease_holder") is not None
        # the only slot is the lease's: another function's call is queued, the idle lease is
        # revoked, and the call runs (it is not throttled after throttle_wait)
        assert other(3) == -3
        assert one(4) == 4  # and the first function goes on (the server's way, or a new lease)
    finally:
        discovery.reset()


def test_leased_calls_survive_a_server_crash_in_its_journal(make_server):
    server = make_server()
    conn = faas.connect(server.url, server.token)
    try:
        @faas.function(name="leased_crash")
        def ident(x):
            return x

        assert ident(0) == 0
        invs = [ident.invoke(i) for i in range(1, 40)]
        assert _lease_of(conn, "leased_crash") is not None
        rids = [inv.request_id for inv in invs]
        server.kill()  # no fold after these: only the journal has some of them
        server.start()
        conn2 = faas.connect(server.url, server.token)
        for rid, inv in zip(rids, invs):
            row = conn2.request("GET", f"/faas/api/invocations/{rid}")
            assert row["status"] == "succeeded", row
        journal = server.base / "data" / "faas" / "journal"
        assert not list(journal.glob("*.jnl"))
    finally:
        discovery.reset()


def test_a_leased_environment_that_dies_mid_call_is_reported_as_its_crash(conn):
    @faas.function(name="leased_dies")
    def die(code):
        if code:
            os._exit(code)
        return 0

    assert die(0) == 0
    assert die(0) == 0
    assert _lease_of(conn, "leased_dies") is not None
    with pytest.raises(errors.RuntimeExited, match="exit status 3"):
        die(3)
    assert die(0) == 0


def test_a_handler_that_writes_over_its_journal_cannot_forge_records(conn):
    @faas.function(name="leased_forger")
    def forge(x, corrupt=False):
        import os as _os
        for fd in range(3, 64 if corrupt else 3):
            try:
                target = _os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.endswith(".jnl"):
                _os.write(fd, b"\x00\x00\x00\x05\x00\x00\x00\x00garbage")
        return x

    assert forge(0) == 0
    assert forge(0) == 0
    assert _lease_of(conn, "leased_forger") is not None
    forged = forge.invoke(1, corrupt=True)  # leased: it wrote garbage into its journal before its end record
    # the server reads a corrupt journal as the environment's fault: it stops the environment,
    # and records the call that corrupted it as failed, saying why (never a forged record)
    # (a read sees it running first: it is promoted, as a read promotes any running leased call)
    row = wait_for(lambda: (r := _row_or_none(conn, forged.request_id)) and r["status"] != "running" and r,
                   what="the corrupting call's end")
    assert row["status"] == "failed" and row["error_type"] == "Runtime.JournalCorrupt", row
    # the server serves on: the next calls run and are recorded
    inv = forge.invoke(3)
    assert inv.result == 3
    assert conn.request("GET", f"/faas/api/invocations/{inv.request_id}")["status"] == "succeeded"


def test_large_arrays_go_the_servers_way_by_file_both_ways(conn):
    """A call with arrays in a buffer file is sent through the server even under a lease (the
    server plans its spare files around large calls), and small calls keep the lease."""
    import numpy

    @faas.function(name="leased_arrays", memory=512)
    def double(a):
        return a * 2

    small = numpy.arange(10)
    assert (double(small) == small * 2).all()
    assert (double(small) == small * 2).all()
    assert _lease_of(conn, "leased_arrays") is not None
    lease = _lease_of(conn, "leased_arrays")
    big = numpy.arange(5_000_000, dtype=numpy.float64)  # 40 MB: out-of-band, through files
    for _ in range(3):
        inv = double.invoke(big)
        assert inv.status == "succeeded" and (inv.result == big * 2).all()
    assert (double.map([small, big, small], show=False)[1] == big * 2).all()
    assert _lease_of(conn, "leased_arrays") is lease  # kept for the small calls
    row = conn.request("GET", f"/faas/api/invocations/{inv.request_id}")
    assert row["status"] == "succeeded"
    # the stored result names its buffers' file: read back whole from the store
    assert (faas.Invocation.from_id(inv.request_id).result == big * 2).all()


def test_with_leases_off_every_call_crosses_the_server(make_server):
    server = make_server("--FaaSServer.leases=False")
    conn = faas.connect(server.url, server.token)
    try:
        @faas.function(name="unleased")
        def one(x):
            return x

        assert [one(i) for i in range(5)] == list(range(5))
        assert one.map(range(50), show=False) == list(range(50))
        assert _lease_of(conn, "unleased") is None
        assert conn.request("GET", "/faas/api/status")["leases"] == 0
        assert not list((server.base / "data" / "faas").glob("journal/*.jnl"))
    finally:
        discovery.reset()


def test_a_stale_end_in_a_shared_done_frame_is_dropped_with_its_bytes(tmp_path):
    """The server's done for a call its leased environment answered first can share a frame with
    the next call's: dropping it must drop its bytes too, or the next result is cut short."""
    import socket as socket_
    import cloudpickle
    from jupyter_faas.client.direct import DirectChannel
    from jupyter_faas.client.invocation import InvocationFuture
    from jupyter_faas.client.serialization import Payload
    from kernel_workers import wire

    path = str(tmp_path / "direct.sock")
    listener = socket_.socket(socket_.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    stale_body, real_body = cloudpickle.dumps("stale result " * 10), cloudpickle.dumps({"the": "answer"})

    def serve():
        peer, _ = listener.accept()
        channel = wire.BlockingChannel(peer)
        channel.recv()  # hello
        channel.send("hello_ack", instance="test")
        header, _ = channel.recv()  # the call
        assert header["k"] == "invoke"
        # a done of two items is not the call's alone: the server sends its accepted first
        channel.send("accepted", version=1, items=[[header["items"][0][0], "real-rid"]])
        item = {"status": "succeeded", "error": None, "report": None, "function": "f", "version": 1}
        channel.send("done", stale_body + real_body, items=[
            dict(item, request_id="stale-rid", nbytes=len(stale_body)),
            dict(item, request_id="real-rid", nbytes=len(real_body))])
        peer.close()
    server = threading.Thread(target=serve)
    server.start()
    try:
        channel = DirectChannel(path, "token", "test")
        channel.stale.add("stale-rid")
        fut = InvocationFuture("f", type("Conn", (), {"buffer_dir": None})())
        channel.call(fut, "f", Payload(cloudpickle.dumps(((), {})), None, 10), encoding="pickle",
                     version="$LATEST", logs=False)
        assert fut.result(timeout=10) == {"the": "answer"}
        assert not channel.stale
    finally:
        server.join(10)
        listener.close()


def _kept(conn, name) -> set:
    """The lease ids the client keeps for the next map of ``name``."""
    return {lease.info["lease_id"] for (function, _), leases in conn._direct._kept.items()
            if function == name for lease in leases}


def test_back_to_back_maps_reuse_their_leases(conn):
    @faas.function(name="leased_again")
    def where(x):
        return os.getpid()

    # the environments a map starts (cold) may come after its last item: until all three serve it
    first = wait_for(lambda: len(pids := set(where.map(range(60), concurrency=3, show=False))) == 3
                     and len(_kept(conn, "leased_again")) == 3 and pids, what="a map served by three leases")
    kept = _kept(conn, "leased_again")
    assert len(kept) == 3
    leases_held = _leases(conn)
    second = set(where.map(range(60), concurrency=3, show=False))
    assert second == first                     # the same environments,
    assert _kept(conn, "leased_again") == kept  # through the same leases, none granted anew
    # a smaller map takes fewer, and gives the rest back to the server
    assert len(set(where.map(range(20), concurrency=1, show=False))) == 1
    assert len(_kept(conn, "leased_again")) == 1
    wait_for(lambda: _leases(conn) <= leases_held - 2, what="the two leases not taken given back")


def test_a_kept_lease_whose_environment_died_or_was_revoked_is_not_used(conn):
    @faas.function(name="leased_kept_dies")
    def where(x):
        return os.getpid()

    # the environments a map starts (cold) may come after its last item: until both serve it
    pids = wait_for(lambda: len(seen := set(where.map(range(40), concurrency=2, show=False))) == 2
                    and len(_kept(conn, "leased_kept_dies")) == 2 and seen, what="a map served by two leases")
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not _alive(victim), what="the environment's death")
    again = where.map(range(40), concurrency=2, show=False)
    assert len(again) == 40 and victim not in again
    # unused, a kept lease is revoked by the server (its environment closes the socket)
    kept = _kept(conn, "leased_kept_dies")
    wait_for(lambda: _leases(conn) == 0, timeout=30, what="the idle leases revoked")
    assert len(where.map(range(40), concurrency=2, show=False)) == 40
    assert not kept & _kept(conn, "leased_kept_dies")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie until its zygote reaps it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_quick_items_do_not_wait_behind_a_slow_one_in_its_environment(conn, tmp_path):
    # Quick items fill deep windows; once an environment is busy with a slow item, it is sent no
    # more: at most its window (what it had unanswered) waits behind it, the rest run elsewhere.
    from jupyter_faas.client.leased_map import WINDOW
    release, marks = tmp_path / "release", tmp_path / "marks"
    marks.mkdir()
    slow, n = 300, 700

    @faas.function(name="leased_mixed", timeout=60)
    def item(x, release=str(release), marks=str(marks), slow=slow):
        import pathlib
        import time as t
        if x == slow:
            while not pathlib.Path(release).exists():  # until the test lets it go
                t.sleep(0.005)
        else:
            pathlib.Path(marks, str(x)).touch()
        return x

    item.map(range(1, 200), concurrency=2, show=False)  # both environments warm
    for mark in marks.iterdir():
        mark.unlink()
    results = []
    mapping = threading.Thread(target=lambda: results.extend(item.map(range(n), concurrency=2, show=False)))
    mapping.start()
    try:
        wait_for(lambda: len(list(marks.iterdir())) >= n - 1 - WINDOW, what="the quick items run beside the slow one")
    finally:
        release.touch()
        mapping.join(60)
    assert results == list(range(n))


def test_a_maps_windows_follow_its_items_mean_duration():
    # The policy itself (no server): quick items open the windows, a mix with slow items keeps
    # every lease's to the few items that fit the budget, whatever the quick ones around them.
    from jupyter_faas.client import leased_map as lm
    m = lm.LeasedMap.__new__(lm.LeasedMap)
    m.item_ms, m._ms_total, m._ms_count, m._cpu_total = None, 0.0, 0, 0.0
    assert m._window() == lm.WINDOW_START            # nothing ended yet
    for _ in range(100):
        m._timed(0.02)
    assert m._window() == lm.WINDOW                  # no-ops: the deepest window
    for x in range(200):
        m._timed(300.0 if x % 10 == 0 else 1.0)      # 10% slow items
    assert m._window() == lm.WINDOW_MIN
    for _ in range(100):                             # quick ones after them do not reopen it
        m._timed(1.0)
    assert m._window() == lm.WINDOW_MIN


def test_a_map_without_concurrency_takes_more_leases_only_while_its_items_wait():
    # The policy itself (no server): items that sleep or wait on I/O get one more lease per
    # queued item; no-ops and items that compute get none (an environment per core serves them)
    from jupyter_faas.client import leased_map as lm

    def policy(durations_and_cpu, grow=True, starting=0):
        m = lm.LeasedMap.__new__(lm.LeasedMap)
        m.item_ms, m._ms_total, m._ms_count, m._cpu_total = None, 0.0, 0, 0.0
        m.grow, m.asking, m.grow_after, m.starting = grow, False, 0.0, starting
        m._probed, m._probe_at, m.leases = {}, 0.0, []  # no environment to read the CPU time of
        for duration, cpu in durations_and_cpu:
            m._timed(duration, cpu)
        return m
    assert policy([])._more_wanted(100) == 0                               # nothing ended yet
    assert policy([(200.0, 0.3)] * 4)._more_wanted(100) == lm.GROW_MAX
    assert policy([(200.0, 0.3)] * 4)._more_wanted(10) == 10
    assert policy([(200.0, 0.3)] * 4, starting=6)._more_wanted(10) == 4
    assert policy([(200.0, 0.3)] * 4, grow=False)._more_wanted(10) == 0   # concurrency= given
    assert policy([(0.05, 0.04)] * 100)._more_wanted(1000) == 0           # no-ops
    assert policy([(50.0, 48.0)] * 10)._more_wanted(1000) == 0            # computing
    assert policy([(50.0, None)] * 10)._more_wanted(1000) == 0            # CPU time unknown
    waiting = policy([(200.0, 0.3)] * 4)
    waiting.asking = True
    assert waiting._more_wanted(100) == 0                                  # one request at a time


def test_a_map_of_waiting_items_without_concurrency_fans_out_past_a_lease_per_core(conn):
    """As the README promises (and the server's path does): a map's width is the memory budget,
    not the core count.  Through leases it stayed at one per core: 200 items of 0.2 s took 20 s
    here instead of about one."""
    from jupyter_faas.client.connection import MAP_LEASES

    @faas.function(name="leased_waits", memory=128, timeout=30)
    def waits(i):
        time.sleep(0.2)
        return os.getpid()

    waits(0)
    waits(0)
    assert _lease_of(conn, "leased_waits") is not None
    futures = map_futures(waits)
    pids = waits.map(range(60), show=False)
    assert len(set(pids)) > MAP_LEASES
    assert all(f._leased is not None for f in futures)  # through leases, not the server's path
    rows = conn.request("GET", "/faas/api/invocations",
                        params={"function": "leased_waits", "status": "succeeded", "limit": 100})
    assert len(rows["invocations"]) == 62


def _handler_lines(rid) -> list:
    """The stored lines of ``rid`` its handler printed (its platform lines left out)."""
    return [line for line in faas.Invocation.from_id(rid).logs
            if not line.startswith(("START RequestId:", "END RequestId:", "REPORT RequestId:", "[ERROR]", "INIT_START"))]


def test_a_leased_call_or_map_item_that_prints_megabytes_is_stored_whole_as_it_ended(conn):
    """More output than a journal record's header takes (1 MB) is stored whole, with the status
    the client got (it was stored failed Runtime.JournalCorrupt, blaming the handler)."""
    @faas.function(name="leased_flood", memory=256, timeout=60)
    def flood(event, context):
        for i in range(event):
            print(f"{i:06d} " + "x" * 1000)
        return context.aws_request_id

    flood(1)
    flood(1)
    assert _lease_of(conn, "leased_flood") is not None
    for n in (600, 2000):  # under a pipe's worth (the environment drains it all), and over
        inv = flood.invoke(n)
        assert inv.status == "succeeded" and inv.result == inv.request_id
        assert faas.Invocation.from_id(inv.request_id).status == "succeeded"
        assert _handler_lines(inv.request_id) == [f"{i:06d} " + "x" * 1000 for i in range(n)]
    rids = flood.map([1500, 1, 1500, 1], concurrency=2, show=False)
    for rid, n in zip(rids, (1500, 1, 1500, 1)):
        row = conn.request("GET", f"/faas/api/invocations/{rid}")
        assert row["status"] == "succeeded", row
        assert len(_handler_lines(rid)) == n


def test_a_leased_call_that_prints_fast_is_read_as_it_prints_and_keeps_every_line_whole(conn):
    """Several pipes' worth of output: once promoted its lines are read as the pipes fill (not a
    read a tick, which cut lines where a read ended and stalled the handler on a full pipe)."""
    @faas.function(name="leased_printer", memory=256, timeout=60)
    def printer(n):
        for j in range(n):
            print(f"y {j} " + "." * 1000)
        print("the last, unterminated", end="")
        return n

    printer(1)
    printer(1)
    assert _lease_of(conn, "leased_printer") is not None
    inv = printer.invoke(5000)
    assert inv.status == "succeeded" and inv.result == 5000
    assert _handler_lines(inv.request_id) == [f"y {j} " + "." * 1000 for j in range(5000)] + \
        ["the last, unterminated"]


@pytest.mark.parametrize("how", ["call", "map"])
def test_a_line_begun_while_the_server_reads_a_leased_call_ends_as_one_line(conn, tmp_path, how):
    """The server read "marker" and "begun" without its newline; the environment drained the
    rest.  The store has one line "begun and ended", and so has the caller: its end comes from
    the server, which alone has every line (answered by the environment, the caller once got
    " and ended" alone, and a line the server had read but not sent yet was lost)."""
    go, told = tmp_path / "go", tmp_path / "rid"

    @faas.function(name=f"leased_begun_{how}", timeout=60)
    def begun(event, context):
        import sys as _sys
        if event:
            told.write_text(context.aws_request_id)
            _sys.stdout.write("marker\nbegun")  # one write: the server reads it in one piece
            _sys.stdout.flush()
            while not go.exists():
                time.sleep(0.005)
            print(" and ended")
        return event

    got = {}
    if how == "call":
        begun(0)
        begun(0)
        assert _lease_of(conn, begun.name) is not None

        def run():  # the caller's own lines (Invocation.logs would read the store's)
            fut = begun._call((1,), {}, raise_first=True)
            assert fut.result() == 1
            got["logs"] = fut.logs
    else:
        begun.map([0, 0], show=False)
        futures = map_futures(begun)

        def run():
            assert begun.map([1], show=False) == [1]
            got["logs"] = futures[0].logs
    call = threading.Thread(target=run)
    call.start()
    try:
        rid = wait_for(lambda: told.exists() and told.read_text(), what="the call's start")
        wait_for(lambda: any(entry["line"] == "marker" for entry in _lines(conn, rid)),
                 what="the server reading the call's output")
    finally:
        go.touch()
        call.join(30)
    assert _handler_lines(rid) == ["marker", "begun and ended"]
    assert [line for line in got["logs"] if not line.startswith(("INIT_START", "START", "END", "REPORT"))] == \
        ["marker", "begun and ended"]


def test_a_running_leased_call_is_seen_running_by_any_read(conn, tmp_path):
    """Before a tick promotes it: a read folds the journal and promotes what runs."""
    go, told = tmp_path / "go", tmp_path / "rid"

    @faas.function(name="leased_seen")
    def seen(event, context):
        if event:
            told.write_text(context.aws_request_id)
            while not go.exists():
                time.sleep(0.005)
        return event

    seen(0)
    seen(0)
    assert _lease_of(conn, "leased_seen") is not None
    call = threading.Thread(target=seen, args=(1,))
    call.start()
    try:
        rid = wait_for(lambda: told.exists() and told.read_text(), what="the call's start")
        assert faas.Invocation.from_id(rid).status == "running"
        listed = conn.request("GET", "/faas/api/invocations",
                              params={"function": "leased_seen", "status": "running"})["invocations"]
        assert [row["request_id"] for row in listed] == [rid]
    finally:
        go.touch()
        call.join(30)
    assert faas.Invocation.from_id(rid).status == "succeeded"


@pytest.mark.parametrize("kind", ["os_exit", "sys_exit", "kill9"])
def test_lines_printed_right_before_a_leased_environment_dies_are_kept(conn, kind):
    @faas.function(name="leased_last_words", timeout=10)
    def last(kind):
        import sys as _sys
        print("about to", kind, flush=True)
        if kind == "os_exit":
            os._exit(3)
        if kind == "sys_exit":
            _sys.exit(1)
        if kind == "kill9":
            os.kill(os.getpid(), signal.SIGKILL)
        return kind

    for _ in range(3):
        # after a death the next lease may be refused a moment (the dead one's slot is not back)
        wait_for(lambda: last("ok") == "ok" and _lease_of(conn, "leased_last_words") is not None,
                 what="a lease on a warm environment")
        inv = last.invoke(kind)
        assert inv.status == "failed"
        assert f"about to {kind}" in _handler_lines(inv.request_id)
        assert f"about to {kind}" in str(inv.error)  # its "Last log lines"


def test_an_environment_once_leased_keeps_every_line_on_the_servers_path(conn):
    """A lease enlarges the environment's pipes (1 MB): a handler then prints half a megabyte and
    answers before the server read it; reading its pipes at the result must take all of it."""
    @faas.function(name="leased_then_not", memory=256)
    def loud(n):
        for j in range(n):
            print(f"z {j} " + "." * 1000)
        return os.getpid()

    leased_pid = loud(1)
    wait_for(lambda: loud(1) and _lease_of(conn, "leased_then_not") is not None, what="a lease")
    wait_for(lambda: _leases(conn) == 0, timeout=30, what="the idle lease given back")
    conn.use_leases = False
    try:
        for _ in range(2):
            inv = loud.invoke(500)
            assert inv.result == leased_pid  # the environment that was leased
            assert _handler_lines(inv.request_id) == [f"z {j} " + "." * 1000 for j in range(500)]
    finally:
        conn.use_leases = True


# ---- what the engine holds for a lease: its own rules, a fake backend (tests/engine_fakes.py)
# with real journals, and the real store ----------------------------------------------------


def _leasing_service(tmp_path):
    import socket as socket_
    from types import SimpleNamespace

    from engine_fakes import FakeBackend
    from jupyter_faas.server.backends.local.leases import EnvironmentLease
    from jupyter_faas.server.engine import FakeClock, Service
    from jupyter_faas.server.store import Store
    from kernel_workers import journal

    class LeasingBackend(FakeBackend):
        """Leases a stand-in environment: a real journal read by a real EnvironmentLease."""

        def can_lease(self, function):
            return True

        def lease(self, function, lease_id, fields):
            path = journal.create(str(tmp_path / "journal"), lease_id)
            ours, theirs = socket_.socketpair()
            theirs.close()
            env = SimpleNamespace(id="env-" + lease_id, lease=None, on_line=None, state="gone", _pipes=[])
            return EnvironmentLease(env, lease_id, path, ours)

        def end_lease(self, lease):
            lease.close()

    store = Store(tmp_path / "faas.sqlite")
    service = Service(store, LeasingBackend(), clock=FakeClock(), memory_budget_mb=10_000,
                      max_concurrency=None, throttle_wait=2.0, max_payload_bytes=1 << 20)
    service.deploy("f", b"code", memory=128, timeout=3)
    return service, store


def _journal_invocation(rid: str, t: float) -> bytes:
    """A start and a clean end record of one invocation, as a leased environment writes them
    (kernel_workers/lease.py)."""
    import json as json_
    from kernel_workers import reports, wire

    rep = reports.report(1.0, 128, 20, None, 0.0000166667, 0.0000002)
    done = {"request_id": rid, "status": "succeeded", "error": None, "report": rep, "function": "f",
            "version": 1, "nbytes": 0, "logs": [[t, "stdout", f"line of {rid}"]]}
    start = wire.pack("start", request_id=rid, t=t, summary="", encoding="pickle", nbytes=0,
                      function="f", version=1, lambda_version="$LATEST", memory_mb=128)
    end = wire.pack_raw(b'{"k":"end","v":%d,"clean":true,"t":%r,"done":%s}' % (
        wire.PROTOCOL_VERSION, t, json_.dumps(done).encode()), b"")
    return start + end


def test_a_journal_backlog_is_folded_in_bounded_batches_every_invocation_stored(tmp_path):
    """A server that fell behind its leases' journals (a map of quick items outruns it) reads,
    stores and lets go of FOLD_RECORDS records at a time: what it holds does not grow with the
    backlog (reading it in at once made the server's RSS jump by tens of MB after a 10,000-item
    map, a different amount each time).  Every invocation still gets its row, lines and REPORT."""
    import asyncio

    from jupyter_faas.server.engine import leases as engine_leases

    async def main():
        service, store = _leasing_service(tmp_path)
        (info, handle), = service.grant_leases("f", 1, 1)[0]
        batches = []
        take = handle.take
        handle.take = lambda: batches.append(len(handle.records)) or take()
        n = engine_leases.FOLD_RECORDS * 3 + 7  # invocations: twice as many records
        fd = os.open(handle.path, os.O_WRONLY | os.O_APPEND)
        t = time.time()
        os.write(fd, b"".join(_journal_invocation(f"backlog-{i:05d}", t + i * 1e-4) for i in range(n)))
        service.fold_leases()
        assert sum(batches) == 2 * n
        assert max(batches) <= engine_leases.FOLD_RECORDS, batches
        # each its row (START, END and REPORT are made from it when read) and its handler's line
        rows = store.db.execute("SELECT count(*) FROM invocations WHERE function='f' "
                                "AND status='succeeded' AND implicit_lines=1").fetchone()[0]
        lines = store.db.execute("SELECT count(DISTINCT request_id) FROM log_lines "
                                 "WHERE line LIKE 'line of backlog-%'").fetchone()[0]
        assert rows == n and lines == n
        # one invocation started and not ended yet: what runs is known once the fold has read
        # to the journal's end (so the server does not promote one that already ended)
        os.write(fd, _journal_invocation("last", t + 1)[:len(_journal_invocation("last", t + 1)) // 2])
        batches.clear()
        service.fold_leases()
        assert handle.running is not None and handle.running[0] == "last"
        os.close(fd)
    asyncio.run(main())


def test_a_lease_that_ended_is_freed_at_once_not_left_to_the_cycle_collector(tmp_path):
    """The engine's callbacks on a lease's handle refer to the lease, which refers to the handle:
    a cycle, freed only when Python's cycle collector next looked at old objects, so every lease
    of every map kept its journal reader's buffer meanwhile (the server's RSS crept up by about
    130 KB a map).  A lease that ended is freed by reference counting alone."""
    import asyncio
    import gc
    import weakref

    async def main():
        service, _ = _leasing_service(tmp_path)
        for _ in range(3):
            (info, handle), = service.grant_leases("f", 1, 1)[0]
            gone = weakref.ref(handle)
            handle.given_back()  # the environment's lease_ended: the engine folds it and lets go
            del handle, info
            assert not service.leases
            assert gone() is None, gc.get_referrers(gone())

    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()


def test_a_leftover_journal_longer_than_a_batch_is_folded_at_start(tmp_path):
    """fold_leftovers reads a journal a stopped server left in batches too: every ended
    invocation stored, a start without an end failed Runtime.ServerStopped."""
    from jupyter_faas.server.engine.lease_leftovers import fold_leftovers
    from jupyter_faas.server.engine import leases as engine_leases
    from kernel_workers import journal

    service, store = _leasing_service(tmp_path)
    directory = str(tmp_path / "leftover")
    path = journal.create(directory, "lease-leftover")
    n = engine_leases.FOLD_RECORDS + 3
    t = time.time()
    with open(path, "ab") as f:
        f.write(b"".join(_journal_invocation(f"left-{i:04d}", t + i * 1e-4) for i in range(n)))
        whole = _journal_invocation("cut", t + 1)
        f.write(whole[:len(whole) // 2])  # its start record (and no end)
    assert fold_leftovers(service, directory) == {"ended": n, "failed": 1}
    assert store.db.execute("SELECT count(*) FROM invocations WHERE status='succeeded'").fetchone()[0] == n
    assert store.get_invocation("cut")["error_type"] == "Runtime.ServerStopped"
    assert not os.path.exists(path)


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def test_a_server_behind_its_journals_catches_up_without_holding_the_backlog(make_server):
    """The server stopped while a client goes on calling its leased environment: the journal
    grows by 20,000 records.  Resumed, the server stores every invocation, and its peak RSS
    while catching up stays within a few MB (reading the backlog in at once took ~1 KB per
    record: a map of quick items left the server's RSS 5-15 MB higher, by chance)."""
    server = make_server()
    conn = faas.connect(server.url, server.token)
    try:
        @faas.function(name="leased_backlog")
        def ident(x):
            return x

        assert ident(0) == 0 and ident(1) == 1
        assert _lease_of(conn, "leased_backlog") is not None
        pid, n = server.proc.pid, 10_000
        before = time.time()
        os.kill(pid, signal.SIGSTOP)  # nothing folded from here on: the journal holds them
        try:
            for i in range(n):
                assert ident(i) == i  # straight to the environment, which needs no server
            with open(f"/proc/{pid}/clear_refs", "w") as f:  # our own child: Linux lets us
                f.write("5")  # the peak RSS (VmHWM) starts again from the RSS now
            rss_kb = _status_kb(pid, "VmRSS")
        finally:
            os.kill(pid, signal.SIGCONT)
        db = sqlite3.connect(server.base / "data" / "faas" / "faas.sqlite")
        wait_for(lambda: conn.request("GET", "/faas/api/invocations", params={"limit": 1}) and db.execute(
            "SELECT count(*) FROM invocations WHERE function='leased_backlog' AND created_at >= ? "
            "AND status='succeeded'", (before,)).fetchone()[0] == n, what="every leased call stored")
        grew_mb = (_status_kb(pid, "VmHWM") - rss_kb) / 1024
        assert grew_mb < 8, f"the server's RSS peaked {grew_mb:.1f} MB over its RSS while catching up"
    finally:
        discovery.reset()


def test_a_functions_newest_lines_are_the_tail_of_all_its_lines(conn):
    # leased rows (platform lines made from the row) and the server's (stored), interleaved by
    # a map's concurrency: any limit gives the newest lines in one order, by time
    @faas.function(name="leased_fn_logs")
    def f(x):
        print("a", x)
        time.sleep(0.05 * (x % 3))
        print("b", x)
        return x

    f(0), f(0), f(0)  # the last two through a lease
    conn.use_leases = False
    try:
        f.map(range(10), concurrency=3, show=False)
    finally:
        conn.use_leases = True

    def lines(n):
        return [line["line"] for line in conn.request(
            "GET", "/faas/api/functions/leased_fn_logs/logs", params={"limit": n})["logs"]]
    full = lines(100000)
    assert sum(line.startswith("REPORT RequestId:") for line in full) == 13
    for n in range(1, 40):
        assert lines(n) == full[-n:], n


@pytest.mark.parametrize("seconds", [0.12, 0.3])
def test_a_leased_maps_items_that_run_a_while_keep_their_lines_live(conn, seconds):
    # an item running past the server's lease tick has its output read by the server: those
    # lines reach the map's futures (and its view) through the server, as on its own path,
    # also when it ends before the client's watch of it reached the server
    @faas.function(name=f"leased_slow_lines_{int(seconds * 100)}", timeout=30)
    def item(x, seconds=seconds):
        print("item", x, flush=True)
        time.sleep(seconds)
        return x

    item.map(range(4), concurrency=4, show=False)
    futures = map_futures(item)
    assert item.map(range(12), concurrency=4, show=False) == list(range(12))
    assert {fut.index: list(fut.logs).count(f"item {fut.index}") for fut in futures} == {i: 1 for i in range(12)}
    assert all(fut.status == "succeeded" for fut in futures)


def test_cancelling_a_leased_maps_items_takes_back_every_unsent_one_at_once(tmp_path):
    # Ctrl-C of a map of many items: what is not sent is cancelled in one pass (it never ran);
    # what was sent is left to the driver (it cancels it through the environment and server)
    import collections
    import os as _os

    from jupyter_faas.client import leased_map as lm
    from jupyter_faas.client.invocation import InvocationFuture

    class Payload:
        discarded = 0

        def discard(self, _):
            Payload.discarded += 1

    m = lm.LeasedMap.__new__(lm.LeasedMap)
    m.lock = threading.Lock()
    m.conn = type("Conn", (), {"buffer_dir": tmp_path})()
    m.wake_r, m.wake_w = _os.pipe()
    futures = [InvocationFuture("f", None) for _ in range(20000)]
    sent = futures[:3]
    m.queue = collections.deque((fut, Payload()) for fut in futures[3:])
    m.cancel_many(futures)
    assert not m.queue and Payload.discarded == len(futures) - 3
    assert all(fut.cancelled() for fut in futures[3:])
    assert all(fut._cancel_requested and not fut.done() for fut in sent)
    _os.close(m.wake_r), _os.close(m.wake_w)


def test_kept_leases_of_a_version_no_longer_mapped_are_closed_once_revoked(conn):
    # each redefinition maps a new version; the leases kept for the old ones must not stay open
    def make(n):
        return faas.function(name="leased_redefined", show=False)(lambda x, n=n: x + n)

    make(0).map(range(20), concurrency=2)
    old = {k for k in conn._direct._kept if k[0] == "leased_redefined"}
    assert old
    wait_for(lambda: _leases(conn) == 0, timeout=30, what="the idle leases revoked")
    make(1).map(range(20), concurrency=2)
    kept = {k for k in conn._direct._kept if k[0] == "leased_redefined"}
    assert kept and not kept & old


def test_map_items_printing_hundreds_of_long_lines_each_end_with_their_id_row_and_lines(conn):
    """Items that each print hundreds of long lines end with their request id, their row and
    their own last line, whichever told the client first: their environment (in batched done
    frames) or the server (an item it was asked to follow had ended: its answer from the row
    once left the future without a request id or any line)."""
    @faas.function(name="leased_chatty", memory=256, timeout=60)
    def chatty(i):
        print("\n".join(f"{i}:{k} " + "y" * 320 for k in range(520)))
        return i

    chatty(0)
    chatty(0)
    assert _lease_of(conn, "leased_chatty") is not None
    futures = map_futures(chatty)
    assert chatty.map(range(200), concurrency=1, show=False, return_exceptions=True) == list(range(200))
    assert len(futures) == 200
    missing = [(i, f._state, f._request_id, f._result) for i, f in enumerate(futures) if f._request_id is None]
    assert not missing, missing[:5]
    for f in futures:
        row = conn.request("GET", f"/faas/api/invocations/{f.request_id}")
        assert row["status"] == "succeeded", row
        assert any(line.startswith(f"{f.result()}:519 ") for line in f.logs), f.logs[-5:]


def test_done_frames_keep_each_header_under_the_readers_cap_and_every_item_in_order():
    """The environment's batch of ends, as frames: however many lines its items carry, every
    frame's header is one a reader takes (over 1 MB it refused the frame as corrupt and the
    client lost the lease), and the items and their bodies arrive whole and in order."""
    import json
    from kernel_workers import lease, wire

    def item(n, lines, width, **extra):
        logs = [[1.0 + k, "stdout", f"{n}:{k} " + "z" * width] for k in range(lines)]
        done = {"request_id": f"rid-{n}", "status": "succeeded", "error": None, "report": {},
                "logs": logs, "nbytes": 3, **extra}
        return done, (json.dumps(done, separators=(",", ":")).encode()
                      if not lease._needs_cap(done) else None)

    items = [item(n, 500, 290) for n in range(12)]                 # ~150 KB each, uncapped
    items += [item(12, 900, 1000)]                                  # capped to 500 lines × 300
    items += [item(13, 500, 290, init_logs=[[0.5, "stdout", "i" * 900_000]])]  # alone over it
    bodies = [b"%03d" % n for n in range(len(items))]
    frames = lease.done_frames(items, bodies)
    assert len(frames) > 3
    decoder = wire.FrameDecoder()
    for frame in frames:
        assert wire.lengths(frame[:wire.HEADER_SIZE])[0] <= wire.MAX_HEADER_BYTES // 2
        decoder.feed(frame)
    got = []
    while (frame := decoder.next_frame()) is not None:
        header, body = frame
        at = 0
        for done in header["items"]:
            got.append((done["request_id"], bytes(body[at:at + done["nbytes"]]), done))
            at += done["nbytes"]
        assert at == len(body)
    assert [(rid, body) for rid, body, _ in got] == [(f"rid-{n}", b"%03d" % n) for n in range(14)]
    assert all(done["logs"][-1][2].startswith(f"{n}:") for n, (_, _, done) in enumerate(got))
    capped = got[12][2]
    assert capped["skipped"] == 400 and capped["logs"][-1][2].startswith("12:899 ")
    alone = got[13][2]
    assert [e[2][:7] for e in alone["logs"][-2:]] == ["13:498 ", "13:499 "] and "skipped" not in alone
    assert alone["init_logs"][0][2].endswith("…[line cut; the store has it all]")


def test_leases_wait_for_a_client_that_is_not_reading_instead_of_blocking_the_server():
    """Descriptors are passed by a write straight to the client's socket.  Made blocking while
    the client was not reading (its map's driver waiting on an HTTP answer from the server),
    that write stopped the server's loop: both waited for ever.  Now the pass waits, without
    blocking, until the client has read what its socket holds."""
    import asyncio
    import socket as socket_
    import types
    from jupyter_faas.server.protocol.direct import DirectSession
    from kernel_workers import wire

    server_end, client_end = socket_.socketpair(socket_.AF_UNIX, socket_.SOCK_STREAM)
    env_end, env_peer = socket_.socketpair(socket_.AF_UNIX, socket_.SOCK_STREAM)
    filler = wire.pack("log", logs={"r": [[0, "stdout", "x" * 150_000]]}, skipped={})

    async def scenario():
        loop = asyncio.get_running_loop()
        transport, session = await loop.connect_accepted_socket(
            lambda: DirectSession(None, "token", "test", 1 << 20), server_end)
        transport.write(filler)                 # unread by the client: most of its socket
        await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 0
        handle = types.SimpleNamespace(client_sock=env_end)
        session._pass_leases([({"lease_id": "lease-1"}, handle)], started=True)
        ticks = 0
        while handle.client_sock is not None and ticks < 20:  # the loop keeps turning meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert handle.client_sock is not None, "passed into a socket its client was not reading"
        # the client reads what it had; the leases follow, with their descriptor
        got = b""
        while len(got) < len(filler):
            got += await loop.sock_recv(client_end, len(filler) - len(got))
        assert got == filler
        while handle.client_sock is not None:
            await asyncio.sleep(0.005)
        transport.close()

    client_end.setblocking(False)
    asyncio.run(asyncio.wait_for(scenario(), 30))
    client_end.setblocking(True)
    channel = wire.BlockingChannel(client_end, buffered=False)
    header, _ = channel.recv()
    assert header["k"] == "leases" and header["items"] == [{"lease_id": "lease-1"}] and header["started"]
    _, fds, _, _ = socket_.recv_fds(client_end, 1, 1)
    passed = socket_.socket(fileno=fds[0])
    passed.sendall(b"ping")
    assert env_peer.recv(4) == b"ping"  # the environment's end reached the client
    for s in (passed, client_end, env_peer):
        s.close()


def test_a_map_of_long_waiting_items_fans_out_before_any_item_ends(conn, tmp_path):
    """Items that wait for seconds: no item ends to say so, so the map reads its environments'
    CPU time.  It stayed at a lease per core: 6 items of 4 s took 12 s on 2 cores (fresh-user
    trial), where the server's path and Lambda run them all at once.  Each item here waits
    until every one has started: the map ends only if all run at once."""
    from jupyter_faas.client.connection import MAP_LEASES
    started = tmp_path / "started"
    started.mkdir()
    n = MAP_LEASES + 3

    @faas.function(name="leased_long_waits", memory=128, timeout=60)
    def waits(i, n=n, started=str(started)):
        open(os.path.join(started, str(i)), "w").close()
        deadline = time.monotonic() + 50
        while len(os.listdir(started)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(os.listdir(started))

    waits.map([-1], show=False)  # deployed, an environment warm
    for name in os.listdir(started):
        os.unlink(os.path.join(started, name))
    futures = map_futures(waits)
    assert waits.map(range(n), show=False) == [n] * n  # all n had started while each waited
    assert all(f._leased is not None for f in futures)  # through leases, not the server's path
