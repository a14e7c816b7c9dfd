"""File events against a real server: S3-shaped records, a file being written reported once when
it is complete, files that appeared while the server was down reported on restart, and bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def record(event, context):
    """Writes each event it gets to $OUT/<request id>.json."""
    import os
    import pathlib
    # written whole, then renamed: the test never reads a half-written record
    tmp = pathlib.Path(os.environ["OUT"], context.aws_request_id + ".part")
    tmp.write_text(__import__("json").dumps(event))
    os.replace(tmp, tmp.with_suffix(".json"))


def outputs(out):
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def keys(out):
    return sorted(e["Records"][0]["s3"]["object"]["key"] for e in outputs(out))


def test_a_new_matching_file_invokes_with_an_s3_record(conn, tmp_path):
    watched, out = tmp_path / "incoming", tmp_path / "out"
    watched.mkdir()
    out.mkdir()
    (watched / "before.csv").write_text("there before the trigger")
    f = faas.function(record, name="on_csv", env={"OUT": str(out)})
    t = f.on_file(watched, pattern="*.csv", events=("created",))
    assert t.kind == "file" and t.spec["path"] == str(watched) and t.enabled
    (watched / "skip.txt").write_text("not a csv")
    (watched / "sub").mkdir()
    content = b"a,b\n1,2\n" * 100
    (watched / "sub" / "Happy Face.csv").write_bytes(content)
    [event] = wait_for(lambda: outputs(out), what="the file event")
    [rec] = event["Records"]
    assert rec["eventSource"] == "aws:s3" and rec["eventName"] == "ObjectCreated:Put"
    assert rec["eventVersion"] == "2.1" and rec["eventTime"].endswith("Z")
    s3 = rec["s3"]
    assert s3["bucket"]["name"] == "incoming" and s3["bucket"]["arn"] == "arn:aws:s3:::incoming"
    assert s3["object"]["key"] == "sub/Happy+Face.csv"
    assert s3["object"]["size"] == len(content)
    assert s3["object"]["eTag"] == hashlib.md5(content).hexdigest()
    assert s3["configurationId"] == t.id
    rows = faas.invocations(function="on_csv")
    assert [r._row["triggered_by"] for r in rows] == ["file"]
    # a modification is not a "created" event; a deletion neither
    (watched / "sub" / "Happy Face.csv").write_text("changed")
    (watched / "late.csv").write_text("x")
    wait_for(lambda: len(outputs(out)) == 2, what="the second file's event")
    assert keys(out) == ["late.csv", "sub/Happy+Face.csv"]
    assert t.refresh().fired == 2
    t.delete()


WRITER = """
import sys, time
with open(sys.argv[1], "wb") as f:
    for i in range(40):
        f.write(b"x" * 1000)
        f.flush()
        time.sleep(0.02)   # a slow writer: a change every 20 ms for 0.8 s
"""


def test_a_file_being_written_is_reported_once_when_complete(conn, tmp_path):
    watched, out = tmp_path / "w", tmp_path / "out"
    watched.mkdir()
    out.mkdir()
    f = faas.function(record, name="on_write", env={"OUT": str(out)})
    t = f.on_file(watched, pattern="*.bin", events=("created", "modified"))
    subprocess.run([sys.executable, "-c", WRITER, str(watched / "big.bin")], check=True)
    (watched / "marker.bin").write_bytes(b"after the big one")
    wait_for(lambda: "marker.bin" in keys(out), what="the marker's event")
    wait_for(lambda: t.refresh().fired == len(outputs(out)), what="every event fired to run")
    events = [e["Records"][0]["s3"]["object"] for e in outputs(out)]
    big = [o for o in events if o["key"] == "big.bin"]
    assert len(big) == 1 and big[0]["size"] == 40_000, events
    assert t.refresh().fired == 2
    t.delete()


def test_files_that_appeared_while_the_server_was_down_are_reported_on_restart(make_server, tmp_path):
    server = make_server()
    watched, out = tmp_path / "inbox", tmp_path / "out"
    watched.mkdir()
    out.mkdir()
    (watched / "gone.csv").write_text("deleted while down")
    (watched / "kept.csv").write_text("unchanged")
    try:
        faas.connect(server.url, server.token)
        f = faas.function(record, name="catch_up", env={"OUT": str(out)})
        t = f.on_file(watched, pattern="*.csv", events=("created", "deleted"))
        server.stop()
        (watched / "new.csv").write_text("created while down")
        (watched / "gone.csv").unlink()
        server.start()
        faas.connect(server.url, server.token)
        wait_for(lambda: len(outputs(out)) == 2, what="the catch-up events")
        names = sorted((e["Records"][0]["eventName"], e["Records"][0]["s3"]["object"]["key"]) for e in outputs(out))
        assert names == [("ObjectCreated:Put", "new.csv"), ("ObjectRemoved:Delete", "gone.csv")]
        [row] = faas.triggers(function="catch_up")   # t's connection was to the old server
        assert row.id == t.id and row.fired == 2 and row.caught_up == 1
        # and it keeps watching after the restart
        (watched / "after.csv").write_text("x")
        wait_for(lambda: len(outputs(out)) == 3, what="an event after the restart")
    finally:
        discovery.reset()


def test_bad_file_triggers_are_invalid_parameters(conn, tmp_path):
    f = faas.function(record, name="on_bad", env={"OUT": str(tmp_path)})
    with pytest.raises(faas.InvalidParameter, match="does not exist"):
        f.on_file(tmp_path / "missing")
    with pytest.raises(faas.InvalidParameter, match="events="):
        f.on_file(tmp_path, events=("renamed",))
    assert faas.triggers(function="on_bad") == []
