"""WAL checkpoints run on the store's own thread, never inside a commit, and lose nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

from jupyter_faas.server.model import new_request_id
from jupyter_faas.server.store.sqlite import Store

from conftest import wait_for

ROW = {"function": "f", "version": 1, "invocation_type": "RequestResponse", "encoding": "pickle",
       "status": "queued", "memory_size_mb": 128, "input_summary": "int", "lambda_version": "$LATEST"}


def _add(store: Store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        rid = new_request_id()
        store.add_invocation(dict(ROW, request_id=rid, created_at=float(i)), b"payload")
        ids.append(rid)
    return ids


def test_commits_leave_checkpoints_to_the_thread_and_the_wal_starts_over(tmp_path):
    store = Store(tmp_path / "faas.sqlite")
    try:
        # The writer's connection never checkpoints inside a commit.
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchall()[0][0] == 0
        _add(store, 300)
        wait_for(lambda: store.checkpointer.checkpoints > 0 and store.checkpointer.last is not None
                 and store.checkpointer.last[1] == store.checkpointer.last[2], timeout=30)
        frames_before = store.checkpointer.last[1]
        assert frames_before > 300  # every one of those commits went through the WAL
        seen = store.checkpointer.checkpoints
        # Everything was copied, so the next commit writes from the WAL's beginning.
        _add(store, 1)
        wait_for(lambda: store.checkpointer.checkpoints > seen, timeout=30)
        assert store.checkpointer.last[1] < frames_before
    finally:
        store.close()


def test_a_killed_server_loses_no_commit_that_was_not_checkpointed(tmp_path):
    # A process writes and dies by SIGKILL right after its commits (no close, no checkpoint):
    # a commit is durable once it is in the WAL.
    path = tmp_path / "faas.sqlite"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from jupyter_faas.server.store.sqlite import Store
        from jupyter_faas.server.store import checkpoints
        checkpoints.Checkpointer.wrote = lambda self: None   # no checkpoint at all
        sys.path.insert(0, {os.path.join(os.getcwd(), "tests")!r})
        from test_store_checkpoints import _add
        store = Store({str(path)!r})
        print(",".join(_add(store, 50)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    ids = proc.stdout.strip().split(",")
    assert len(ids) == 50
    assert os.path.getsize(str(path) + "-wal") > 0  # the rows were only in the WAL
    db = sqlite3.connect(path)
    found = {r[0] for r in db.execute("SELECT request_id FROM invocations")}
    assert found == set(ids)


def test_close_stops_the_thread(tmp_path):
    store = Store(tmp_path / "faas.sqlite")
    _add(store, 5)
    thread = store.checkpointer._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
