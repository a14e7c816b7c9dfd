"""The store keeps what a restart needs and no more, and large results outside SQLite."""

import time

from jupyter_faas.server.store import INLINE_MAX, Store


def _row(rid, status, **extra):
    return {"request_id": rid, "function": "f", "version": 1, "invocation_type": "RequestResponse",
            "encoding": "pickle", "status": status, "created_at": time.time(), "memory_size_mb": 128,
            **extra}


def test_queued_payload_is_kept_for_recovery_running_one_is_not(tmp_path):
    store = Store(tmp_path / "faas.sqlite")
    store.add_invocation(_row("q", "queued"), b"args")
    store.add_invocation(_row("r", "running", started_at=time.time(), environment_id="env-1"), b"args")
    assert store.get_payload("q") == b"args"
    assert store.get_payload("r") == b""  # failed, never re-run, after a crash
    assert store.get_invocation("r")["environment_id"] == "env-1"
    assert [row["request_id"] for row in store.unfinished()] == ["q", "r"]


def test_large_result_lives_in_a_file_and_reads_back(tmp_path):
    store = Store(tmp_path / "faas.sqlite")
    big, small = b"x" * (INLINE_MAX + 1), b"y" * 10
    for rid, result in (("big", big), ("small", small)):
        store.add_invocation(_row(rid, "queued"), b"")
        store.finish_invocation(rid, {"status": "succeeded", "ended_at": time.time()}, result, [])
    assert store.get_result("big") == big and store.get_result("small") == small
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["big.result"]
    store.close()
    assert Store(tmp_path / "faas.sqlite").get_result("big") == big  # the result-file migration is idempotent


def test_request_ids_are_uuids_ordered_by_creation():
    import uuid
    from jupyter_faas.server.model import new_request_id
    first = new_request_id()
    time.sleep(0.002)
    later = [new_request_id() for _ in range(1000)]
    assert len(set(later)) == 1000
    assert all(uuid.UUID(rid).version == 7 and str(uuid.UUID(rid)) == rid for rid in later)
    assert all(first < rid for rid in later)  # the primary-key index grows at one end
