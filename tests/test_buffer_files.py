"""Large arrays pass through files of the server's buffer directory, mapped without a copy.

Each test looks at *how* the data went (a mapped file, or bytes in a message), never at
how long it took: an array that arrived by file is backed by an ``mmap``.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy
import pytest
from tornado import httpclient, websocket

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import connection, discovery
from kernel_workers import wire

MB = 1_000_000
#: float64s in a 2 MB array: out of band (over 1 MB), within the default 6 MB payload limit
N = 250_000


def mapped(array) -> bool:
    """Whether an array's memory is a mapped file (it came by file, not in a message)."""
    base = array
    while isinstance(base, numpy.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def inspect_argument(a):
    """What the environment got: whether the array is a mapped file, its sum, writability."""
    base = a
    while isinstance(base, numpy.ndarray) and base.base is not None:
        base = base.base
    is_mapped = isinstance(base, memoryview) and type(base.obj).__name__ == "mmap"
    a[0] += 1  # copy-on-write: the caller's file is not changed
    return is_mapped, float(a.sum()), a.flags.writeable


def make_array(n):
    import numpy
    return numpy.arange(n, dtype="float64")


def files_in(directory: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))


def buffer_dir(server) -> Path:
    return server.base / "data" / "faas" / "buffers"


def test_large_argument_and_result_go_by_file_and_round_trip(conn, server):
    assert conn.buffer_dir == buffer_dir(server)
    assert oct(conn.buffer_dir.stat().st_mode & 0o777) == "0o700"
    inspect = faas.function(inspect_argument, name="inspect_argument", memory=512)
    make = faas.function(make_array, name="make_array", memory=512)

    arg = numpy.arange(N, dtype="float64")
    is_mapped, total, writable = inspect(arg)
    assert is_mapped and writable
    assert total == float(arg.sum()) + 1
    assert arg[0] == 0  # the caller's array is untouched
    (row,) = conn.request("GET", "/faas/api/invocations",
                          params={"function": "inspect_argument", "limit": 1})["invocations"]
    assert row["input_summary"] == "pickled arguments, 1.9 MB"  # the buffers count too

    inv = make.invoke(N)
    result = inv.result
    assert numpy.array_equal(result, numpy.arange(N, dtype="float64"))
    assert mapped(result) and result.flags.writeable
    result[:] = -1  # copy-on-write: the stored result stays as it was
    assert (conn.buffer_dir / f"res-{inv.request_id}").stat().st_mode & 0o777 == 0o600
    again = faas.Invocation.from_id(inv.request_id).result
    assert again[1] == 1 and mapped(again)

    # The argument's file goes once the invocation has ended; the result's stays with its row.
    wait_for(lambda: not files_in(conn.buffer_dir, "arg-"))
    assert f"res-{inv.request_id}" in files_in(conn.buffer_dir, "res-")


def test_small_arrays_stay_in_the_message(conn):
    make = faas.function(make_array, name="make_small_array")
    inv = make.invoke(1000)  # 8 KB: below the threshold
    assert not mapped(inv.result) and inv.result.flags.writeable
    assert not (conn.buffer_dir / f"res-{inv.request_id}").exists()


def test_result_is_readable_from_another_process(conn, server):
    make = faas.function(make_array, name="make_for_another")
    rid = make.invoke(N).request_id
    script = (
        "import sys, mmap, numpy, jupyter_faas as faas\n"
        "faas.connect(sys.argv[1], sys.argv[2])\n"
        "r = faas.Invocation.from_id(sys.argv[3]).result\n"
        "b = r\n"
        "while isinstance(b, numpy.ndarray) and b.base is not None: b = b.base\n"
        "print(float(r.sum()), isinstance(getattr(b, 'obj', None), mmap.mmap))\n")
    out = subprocess.run([sys.executable, "-c", script, server.url, server.token, rid],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(float(numpy.arange(N, dtype="float64").sum())), "True"]


def test_a_client_that_does_not_share_the_directory_gets_the_same_results_in_messages(conn, server):
    remote = connection.Connection(server.url, server.token, share_files=False)
    try:
        assert remote.buffer_dir is None
        inspect = faas.RemoteFunction(inspect_argument, name="inspect_remote", memory=512,
                                      connection=remote)
        make = faas.RemoteFunction(make_array, name="make_remote", memory=512, connection=remote)
        before = set(files_in(buffer_dir(server), "arg-"))
        arg = numpy.arange(N, dtype="float64")
        assert inspect(arg) == (False, float(arg.sum()) + 1, True)
        assert set(files_in(buffer_dir(server), "arg-")) <= before  # never wrote one
        inv = make.invoke(N)
        result = inv.result
        assert numpy.array_equal(result, arg) and not mapped(result) and result.flags.writeable
    finally:
        remote.close()

    # The environment still wrote the result's buffers to a file; REST sends them after the pickle.
    req = urllib.request.Request(f"{server.url}/faas/api/invocations/{inv.request_id}/result",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req) as resp:
        body, lengths = resp.read(), [int(n) for n in resp.headers["X-Faas-Buffers"].split(",")]
    end = len(body) - sum(lengths)
    views, at = [], end
    for n in lengths:
        views.append(body[at:at + n])
        at += n
    assert numpy.array_equal(pickle.loads(body[:end], buffers=views), arg)


def _send_invoke(server, descriptor) -> dict:
    """One raw ``invoke`` frame naming ``descriptor``; the server's answer's header."""
    async def go():
        req = httpclient.HTTPRequest(server.url.replace("http", "ws") + "/faas/api/ws",
                                     headers={"Authorization": f"token {server.token}"})
        ws = await websocket.websocket_connect(req)
        payload = pickle.dumps(((), {}))
        ws.write_message(wire.pack("invoke", payload, function="inspect_argument", encoding="pickle",
                                   queue=False, logs=False, items=[[1, len(payload), descriptor]]),
                         binary=True)
        header, _ = wire.unpack(await asyncio.wait_for(ws.read_message(), 30))
        ws.close()
        return header
    return asyncio.run(go())


def test_a_descriptor_naming_anything_outside_the_directory_is_rejected(conn, server, tmp_path):
    faas.function(inspect_argument, name="inspect_argument", memory=512).deploy()
    directory = buffer_dir(server)
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 4096)
    (directory / "arg-link").symlink_to(secret)
    for name, why in (("../faas.sqlite", "is not a buffer file name"),
                      (str(secret), "is not a buffer file name"),
                      (".instance", "is not a buffer file name"),
                      ("arg-link", "is not a regular file"),
                      ("arg-missing", "No such file")):
        header = _send_invoke(server, {"file": name, "spans": [[0, 10]]})
        assert header["k"] == "rejected", (name, header)
        assert header["error"]["errorType"] == "InvalidParameterValueException"
        assert why in header["error"]["errorMessage"], header["error"]
    (directory / "arg-short").write_bytes(b"x" * 10)
    header = _send_invoke(server, {"file": "arg-short", "spans": [[0, 11]]})
    assert header["k"] == "rejected" and "has 10 bytes" in header["error"]["errorMessage"]
    assert not (directory / "arg-short").exists()  # a rejected call's file is deleted
    assert secret.read_bytes() == b"s" * 4096


def test_the_payload_limit_counts_bytes_in_messages_and_buffers_in_files_have_their_own(make_server):
    server = make_server("--FaaSServer.max_payload_mb=1")
    conn = faas.connect(server.url, server.token)
    try:
        total = faas.function(lambda a: float(a.sum()), name="total")
        make = faas.function(make_array, name="make_big", memory=512)
        # 2 MB of array in a file: over max_payload_mb, within the function's memory.
        assert total(numpy.ones(2 * MB, dtype="uint8")) == 2 * MB
        assert numpy.array_equal(make(N), numpy.arange(N, dtype="float64"))
        # The same bytes inside the message are held to max_payload_mb.
        with pytest.raises(faas.PayloadTooLarge, match=r"limit is 1048576 bytes.*max_payload_mb"):
            total(b"x" * (2 * MB))
        assert total(numpy.ones(1000)) == 1000.0
        with pytest.raises(faas.ResponseSizeTooLarge, match="the result is .* bytes; the limit is 1048576 bytes inside a message"):
            faas.function(lambda: b"x" * (2 * MB), name="make_bytes")()

        # A client elsewhere gets every byte in its messages: Lambda's limit, both ways.
        remote = connection.Connection(server.url, server.token, share_files=False)
        try:
            total_remote = faas.RemoteFunction(lambda a: float(a.sum()), name="total", connection=remote)
            with pytest.raises(faas.PayloadTooLarge, match=r"limit is 1048576 bytes"):
                total_remote(numpy.ones(2 * MB, dtype="uint8"))
            make_remote = faas.RemoteFunction(make_array, name="make_big", memory=512, connection=remote)
            with pytest.raises(faas.SerializationError, match=r"over the 1048576 bytes \(max_payload_mb\)"):
                make_remote(N)
        finally:
            remote.close()
        assert not files_in(conn.buffer_dir, "arg-")
    finally:
        discovery.reset()
    server.stop()
    assert not files_in(buffer_dir(server), "spare-")  # a stopping server deletes its spares


def test_buffer_files_no_row_names_are_swept_at_start_and_stored_results_kept(make_server):
    server = make_server()
    faas.connect(server.url, server.token)
    try:
        kept = faas.function(make_array, name="make_kept", memory=512).invoke(N).request_id
    finally:
        discovery.reset()
    server.stop()
    directory = buffer_dir(server)
    assert f"res-{kept}" in files_in(directory, "res-")
    # What a crash leaves: a client's argument never sent, a result whose row never ended.
    (directory / "arg-of-a-dead-client").write_bytes(b"x")
    (directory / "res-01900000-0000-7000-8000-000000000000").write_bytes(b"x")
    server.start()
    assert files_in(directory, "arg-") == []
    assert files_in(directory, "res-") == [f"res-{kept}"]
    faas.connect(server.url, server.token)
    try:
        assert numpy.array_equal(faas.Invocation.from_id(kept).result, numpy.arange(N, dtype="float64"))
    finally:
        discovery.reset()


def test_share_buffers_off_sends_everything_in_messages(make_server):
    server = make_server("--FaaSServer.share_buffers=False")
    conn = faas.connect(server.url, server.token)
    try:
        assert conn.buffer_dir is None and "buffers" not in conn.status
        inspect = faas.function(inspect_argument, name="inspect_inline", memory=512)
        make = faas.function(make_array, name="make_inline", memory=512)
        arg = numpy.arange(N, dtype="float64")
        assert inspect(arg) == (False, float(arg.sum()) + 1, True)
        result = make(N)
        assert numpy.array_equal(result, arg) and not mapped(result)
        assert not buffer_dir(server).exists()
    finally:
        discovery.reset()


def test_a_100_mb_argument_fits_a_256_mb_function_under_the_watchdog(make_server):
    # The mapped file is not copied into the environment's heap, and RLIMIT_AS (2x + 1 GB)
    # leaves room for the mapping.
    server = make_server("--FaaSServer.memory_enforcement=watchdog", "--FaaSServer.max_payload_mb=200")
    faas.connect(server.url, server.token)
    try:
        total = faas.function(lambda a: int(a.sum()), name="total_watchdog", memory=256)
        assert total(numpy.ones(100 * MB, dtype="uint8")) == 100 * MB
    finally:
        discovery.reset()


@pytest.mark.timeout(180)
def test_a_queued_big_argument_survives_a_server_kill(make_server, monkeypatch):
    server = make_server("--FaaSServer.max_concurrency=1")
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    for key in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(key, server.env[key])
    conn = faas.connect()  # through the runtime file, so it finds the restarted server
    try:
        sleeper = faas.function(lambda s: time.sleep(s), name="sleeper", timeout=60)
        total = faas.function(lambda a: float(a.sum()), name="total_after_restart", memory=512)
        sleeper.spawn(30)
        wait_for(lambda: {i.status for i in faas.invocations(function="sleeper")} == {"running"})
        arg = numpy.arange(N, dtype="float64")
        results = []
        mapper = threading.Thread(target=lambda: results.append(total.map([arg], show=False)))
        mapper.start()
        wait_for(lambda: {i.status for i in faas.invocations(function="total_after_restart")} == {"queued"})
        (queued_file,) = files_in(conn.buffer_dir, "arg-")

        server.kill()
        (conn.buffer_dir / "arg-left-by-a-dead-client").write_bytes(b"x")
        server.start()  # same data dir
        mapper.join(90)
        assert not mapper.is_alive(), "the map never learned how its item ended"
        assert results == [[float(arg.sum())]]
        assert not (conn.buffer_dir / "arg-left-by-a-dead-client").exists()  # swept at start
        wait_for(lambda: queued_file not in files_in(conn.buffer_dir, "arg-"))
        row = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/faas/api/status", headers={"Authorization": f"token {server.token}"})).read())
        assert row["buffers"]["nonce"] != ""  # a new instance, a new nonce, still shared
    finally:
        discovery.reset()


def test_buffer_file_format(tmp_path):
    from kernel_workers import buffers
    a, b = numpy.arange(1000, dtype="uint8"), numpy.arange(N, dtype="float64")
    data, raws = buffers.dumps((a, b), out_of_band=True)
    assert len(raws) == 2 and len(data) < 1000
    small, big = buffers.spare_name(1 << 20, "aa"), buffers.spare_name(1 << 22, "bb")
    buffers.make_spare(tmp_path, small, 1 << 20)
    buffers.make_spare(tmp_path, big, 1 << 22)
    assert buffers.spares_in(tmp_path) == [(1 << 20, small), (1 << 22, big)]
    spans = buffers.write(tmp_path / "arg-1", raws)
    # The smallest spare the data fits was taken, and cut to the data's end.
    assert (tmp_path / small).exists() and not (tmp_path / big).exists()
    assert spans == [[0, 1000], [1024, N * 8]] and (tmp_path / "arg-1").stat().st_size == 1024 + N * 8
    got_a, got_b = pickle.loads(data, buffers=buffers.map_views(tmp_path / "arg-1", {"spans": spans}))
    assert numpy.array_equal(got_a, a) and numpy.array_equal(got_b, b) and got_b.flags.writeable
    (tmp_path / small).unlink()
    assert buffers.write(tmp_path / "arg-2", raws) == spans  # no spare left: a new file
    # A recycled spare (a spent argument's file) keeps none of its old bytes: the gap between
    # the buffers is zeroed and its rest cut off.
    old = buffers.spare_name(1 << 22, "cc")
    (tmp_path / old).write_bytes(b"\xff" * (1 << 22))
    assert buffers.write(tmp_path / "arg-3", raws) == spans
    written = (tmp_path / "arg-3").read_bytes()
    assert written == bytes(a) + bytes(24) + bytes(b) and not (tmp_path / old).exists()
    assert buffers.dumps((numpy.arange(10),), out_of_band=True)[1] == []  # small: in band
    with pytest.raises(buffers.BufferFileError, match="shorter than its descriptor"):
        buffers.map_views(tmp_path / "arg-2", {"spans": [[0, 1024 + N * 8 + 1]]})
    (tmp_path / "arg-link").symlink_to(tmp_path / "arg-2")
    with pytest.raises(buffers.BufferFileError, match="cannot open"):
        buffers.map_views(tmp_path / "arg-link", {"spans": [[0, 1]]})
    for bad in ("../x", "/etc/passwd", ".instance", "a/b", "", None, "x" * 200):
        with pytest.raises(buffers.BufferFileError):
            buffers.check_name(bad)


def test_a_server_that_never_sees_a_large_buffer_makes_no_spares(make_server):
    server = make_server()
    conn = faas.connect(server.url, server.token)
    try:
        @faas.function(name="small_only")
        def small_only(x):
            return x + 1
        assert small_only.map(range(20)) == list(range(1, 21))
        # Spares are planned from large buffers seen: none wanted, none being made, none made.
        buffers_state = conn.request("GET", "/faas/api/status")["buffers"]
        assert (buffers_state["spares_wanted"], buffers_state["spares_making"],
                buffers_state["spares"]) == (0, 0, 0), buffers_state
        assert conn.buffer_dir is not None and not files_in(conn.buffer_dir, "spare-")
    finally:
        discovery.reset()
