"""Spare buffer files: sized to recent use, results' files made by the server, spent arguments reused.

Large arguments and results are written over files whose pages the server already has
in the page cache (spares), because getting fresh pages from the kernel can cost more
than the copy.  These tests look at the files, their sizes and inodes, and at what the
REPORT says, never at how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery
from jupyter_faas.server.backends.local.buffer_files import BufferFiles
from kernel_workers import buffers

MB = 1_000_000


def spares(directory) -> list:
    """``[(size, name)]`` of the finished spares, smallest first."""
    return buffers.spares_in(directory)


def settled(conn) -> list:
    """The spares, once the server has made as many as recent use wants."""
    status = conn.request("GET", "/faas/api/status")["buffers"]
    done = status["spares_making"] == 0 and status["spares"] == status["spares_wanted"] > 0
    return done and spares(conn.buffer_dir)


def fill(n):
    import numpy
    a = numpy.empty(n, dtype="uint8")
    a.fill(7)
    return a


def fill_and_sum(n):
    return int(fill(n).sum())


def total(a):
    return int(a.sum())


KEPT = None


def keep(a):
    """Keeps its argument (a mapped file) across invocations; with None, says what it kept."""
    global KEPT
    if a is not None:
        KEPT = a
        return None
    return int(KEPT.sum()), int(KEPT[0]), int(KEPT[-1])


def test_a_large_results_page_cache_does_not_count_against_the_functions_memory(make_server):
    server = make_server()
    faas.connect(server.url, server.token)
    try:
        # 150 MB of array in a 256 MB function: the file the result is written to (150 MB of
        # page cache) would put it over its limit, and its Max Memory Used at the limit, if it
        # were charged to the function's memory cgroup.
        make = faas.function(fill, name="fill_150", memory=256)
        same_without_result = faas.function(fill_and_sum, name="fill_and_sum_150", memory=256)
        used = same_without_result.invoke(150 * MB)
        assert used.result == 7 * 150 * MB
        honest = used.report.max_memory_used_mb
        assert 150 <= honest < 256, used.report
        for _ in range(3):  # the first finds no spare; later ones do; a warm one keeps nothing
            inv = make.invoke(150 * MB)
            result = inv.result
            assert inv.status == "succeeded" and result.nbytes == 150 * MB and result[-1] == 7
            assert 150 <= inv.report.max_memory_used_mb <= honest + 16, (honest, inv.report)
    finally:
        discovery.reset()


def test_spares_follow_recent_use_and_results_are_written_over_them(make_server):
    server = make_server()
    conn = faas.connect(server.url, server.token)
    directory = conn.buffer_dir
    try:
        make = faas.function(fill, name="fill_spares", memory=512)
        assert make(2 * MB).nbytes == 2 * MB
        # As large as recent use (rounded up to a MiB), not a fixed size.
        have = wait_for(lambda: settled(conn))
        assert all(2 * MB <= size <= 3 * MB for size, _ in have), have

        # A result is written over a spare (its inode), not into new pages.
        before = {os.stat(directory / name).st_ino for _, name in have}
        inv = make.invoke(2 * MB)
        assert inv.result.nbytes == 2 * MB
        assert os.stat(directory / f"res-{inv.request_id}").st_ino in before
        assert (directory / f"res-{inv.request_id}").stat().st_size == 2 * MB  # the rest cut off

        # Larger calls: larger spares, the small ones dropped.
        assert make(12 * MB).nbytes == 12 * MB
        wait_for(lambda: settled(conn) and all(s >= 12 * MB for s, _ in settled(conn)),
                 what="spares of the new size only")

        # Large calls back to back: more spares kept ready than the two of a single call.
        for _ in range(4):
            assert total(make(12 * MB)) == 7 * 12 * MB
        wait_for(lambda: len(spares(directory)) > 2, what="more spares for back-to-back calls")
    finally:
        discovery.reset()


def test_an_argument_the_handler_keeps_is_never_written_over(make_server):
    server = make_server()
    conn = faas.connect(server.url, server.token)
    directory = conn.buffer_dir
    size = 3 * MB + 1  # no spare the server makes has this size: only a reused argument's file
    try:
        keeper = faas.function(keep, name="keeper", memory=512, concurrency=1)
        summer = faas.function(total, name="summer", memory=512)
        kept = numpy.arange(size, dtype="uint64").astype("uint8")
        assert keeper(kept) is None  # its environment keeps the argument's mapped file
        other = numpy.full(size, 9, dtype="uint8")
        assert summer(other) == 9 * size  # its environment lets go of it
        # The second argument's file became a spare (no process maps it); the first did not.
        wait_for(lambda: [s for s, _ in spares(directory)].count(size) == 1,
                 what="the spent argument's file as a spare")
        assert [s for s, _ in spares(directory)].count(size) == 1
        for fill_value in (1, 2, 3):  # written over spares, the reused one first (smallest)
            assert summer(numpy.full(size, fill_value, dtype="uint8")) == fill_value * size
        assert keeper(None) == (int(kept.sum()), int(kept[0]), int(kept[-1]))
    finally:
        discovery.reset()


def test_a_spare_being_made_is_taken_when_no_finished_one_fits(tmp_path):
    go = threading.Event()  # its maker's pace: it waits before reading each chunk in
    made = []
    partial = tmp_path / buffers.partial_name(4 * MB, "aa")
    maker = threading.Thread(target=lambda: made.append(buffers.make_spare(
        tmp_path, "spare-making-aa", 4 * MB, partial=partial.name, pace=go.wait)))
    maker.start()
    data = numpy.arange(3 * MB, dtype="uint64").astype("uint8")
    try:
        wait_for(partial.exists, what="the spare being made, under its partial name")
        assert buffers.spares_in(tmp_path) == []  # not finished: not a spare yet
        inode = partial.stat().st_ino
        # A finished spare the data fits comes first.
        buffers.make_spare(tmp_path, buffers.spare_name(3 * MB, "bb"), 3 * MB)
        buffers.write(tmp_path / "arg-1", [memoryview(data)])
        assert partial.exists() and buffers.spares_in(tmp_path) == []
        # Then the one being made, before a finished one too small for the data.
        small = buffers.spare_name(2 * MB, "cc")
        buffers.make_spare(tmp_path, small, 2 * MB)
        buffers.write(tmp_path / "arg-2", [memoryview(data)])
        assert (tmp_path / "arg-2").stat().st_ino == inode and not partial.exists()
        assert not buffers.take_spare(tmp_path, tmp_path / "res-1", 3 * MB, fitting_only=True)
    finally:
        go.set()
        maker.join()
    # Its maker read on to the end of the file its writer cut, saw it taken, and left it.
    assert made == [False]
    assert sorted(os.listdir(tmp_path)) == ["arg-1", "arg-2", small]
    assert (tmp_path / "arg-2").read_bytes() == data.tobytes()


async def until(predicate, what: str, timeout: float = 30.0):
    """``wait_for`` for a test running on the loop the buffer files call back on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def sized(files, name: str, size: int) -> dict:
    """A new argument file as a client starts writing it: given its size first."""
    with open(files.dir / name, "wb") as f:
        f.truncate(size)
    return {"file": name, "spans": [[0, size]]}


def test_spares_are_not_made_while_an_environment_starts_unless_a_large_argument_is_in_flight(tmp_path):
    async def main():
        files = BufferFiles(tmp_path / "buffers", budget=64 * MB)
        try:
            files.check(sized(files, "arg-a", 3 * MB))
            files.discard({"file": "arg-a"})  # its invocation ended: large buffers in recent use
            assert files.hold()  # a cold start: the spares wait
            assert files.info()["spares_paused"]
            files.replenish()
            await until(lambda: buffers.partials_in(files.dir, 3 * MB), "a spare begun")
            assert files.spares() == [] and files.info()["spares_making"] == 1
            files.release()  # started: the spares go on (after a moment)
            await until(lambda: len(files.spares()) == files.info()["spares_wanted"] > 1,
                        "the spares made once the environment started")
            await until(lambda: not files.info()["spares_paused"], "the pause over")
            # A large argument in flight: its burst needs spares more than a cold start does.
            files.check(sized(files, "arg-b", 3 * MB))
            assert not files.hold() and not files.info()["spares_paused"]
            files.discard({"file": "arg-b"})
            assert files.hold()
            files.release()
        finally:
            files.drop_spares()
    asyncio.run(main())


def test_a_large_argument_is_seen_when_its_writing_starts(make_server):
    server = make_server()
    conn = faas.connect(server.url, server.token)
    try:
        status = conn.request("GET", "/faas/api/status")["buffers"]
        assert status["spares_wanted"] == 0  # nothing large seen yet
        with open(conn.buffer_dir / "arg-being-written", "wb") as f:
            f.truncate(3 * MB)  # how a client starts a new argument file (given its size first)
            # Before any invocation names it, spares of its size are planned and made.
            wait_for(lambda: conn.request("GET", "/faas/api/status")["buffers"]["spares_wanted"] > 0,
                     what="spares planned from the argument file being written")
            have = wait_for(lambda: settled(conn))
            assert all(size >= 3 * MB for size, _ in have), have
        (conn.buffer_dir / "arg-being-written").unlink()
    finally:
        discovery.reset()


def test_spares_are_made_from_the_first_large_file_and_kept_until_idle(tmp_path):
    now = [1000.0]
    async def main():
        files = BufferFiles(tmp_path / "buffers", budget=64 * MB, keep_s=300.0, clock=lambda: now[0])
        try:
            files.check(sized(files, "arg-a", 3 * MB))
            files.discard({"file": "arg-a"})
            files.replenish()
            # One large file: a run of large calls may be starting, its spares are made now.
            wanted = files.info()["spares_wanted"]
            assert wanted >= 6, files.info()
            await until(lambda: len(files.spares()) == wanted and not files.info()["spares_making"],
                        "the spares of the first large file")
            now[0] += 30  # the run is over: no more are made, those made are kept
            files.replenish()
            assert files.plan()[2] < wanted and files.info()["spares_wanted"] == wanted
            assert len(files.spares()) == wanted and not files.info()["spares_making"]
            now[0] += 300  # idle_timeout without a large buffer: they go
            files.replenish()
            await until(lambda: not files.spares(), "the spares gone after keep_s")
            assert files.info()["spares_wanted"] == 0
        finally:
            files.drop_spares()
    asyncio.run(main())
