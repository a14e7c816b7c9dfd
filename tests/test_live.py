"""Live in the notebook: logs while running, the map widget and its buttons, floods, re-attach.

Kernel tests drive a real kernel the way JupyterLab does (tests/kernels.py): they
read the widget models' state from iopub and send the same comm messages a click
sends, while the cell is still blocking.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import jupyter_faas as faas

from conftest import map_futures
from kernels import RawKernel


@pytest.fixture
def kernel(server, conn, tmp_path):
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    k = RawKernel(env, str(tmp_path))
    out, err = k.run("import time, itertools\nimport jupyter_faas as faas")
    assert err is None, err
    yield k
    k.kill()


def _statuses(function: str) -> dict:
    counts: dict = {}
    for inv in faas.invocations(function=function, limit=1000):
        counts[inv.status] = counts.get(inv.status, 0) + 1
    return counts


# ---- transport and semantics (client in this process) -----------------------------------------

def test_log_lines_arrive_while_the_function_is_still_running(conn):
    @faas.function(name="prints_then_sleeps", timeout=30)
    def prints_then_sleeps():
        print("first line", flush=True)
        time.sleep(4)
        print("second line", flush=True)
        return "done"

    fut = prints_then_sleeps.spawn()
    deadline = time.monotonic() + 10
    while "first line" not in fut.logs:
        assert time.monotonic() < deadline, f"no live line; status {fut.status}, logs {list(fut.logs)}"
        time.sleep(0.02)
    # the line is here while the function sleeps: it was streamed, not delivered at the end
    assert not fut.done() and fut.status == "running"
    assert "second line" not in fut.logs
    assert fut.result() == "done"
    assert "second line" in fut.logs


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_map_first_failure_names_the_item_and_cancels_the_rest(conn, leases):
    conn.use_leases = leases
    name = f"fails_at_zero_{'leased' if leases else 'server'}"

    @faas.function(name=name, timeout=60)
    def fails_at_zero(x):
        if x == 0:
            time.sleep(0.5)
            raise KeyError("zero")
        time.sleep(30)
        return x

    futures = []
    original = fails_at_zero._submit_items

    def keep(*args, **kwargs):
        out = original(*args, **kwargs)
        futures.extend(out)
        return out
    fails_at_zero._submit_items = keep
    with pytest.raises(KeyError) as info:
        fails_at_zero.map(range(6), concurrency=3)
    assert isinstance(info.value, faas.FunctionError)
    assert info.value.details["index"] == 0
    assert any("map item 0 failed" in n for n in info.value.__notes__)
    assert "raise KeyError" in info.value.details["remote_traceback"]
    assert sorted(f.status for f in futures) == ["cancelled"] * 5 + ["failed"]
    counts = _statuses(name)
    rows = conn.request("GET", "/faas/api/invocations", params={"function": name})
    started = [r for r in rows["invocations"] if r["started_at"]]
    # items 1 and 2 were running and were killed; item 3 may have taken item 0's place before
    # the cancel came; no more started (concurrency=3)
    assert 3 <= len(started) <= 4, rows
    if leases:
        # through leased environments, what never started was never accepted, so never recorded
        assert counts == {"failed": 1, "cancelled": len(started) - 1}, counts
    else:
        # 3..5 waited on the server behind the cap and were dropped or killed
        assert counts == {"failed": 1, "cancelled": 5}, counts


def test_map_return_exceptions_runs_everything_and_returns_failures_in_place(conn):
    @faas.function(name="odd_fails")
    def odd_fails(x):
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    out = odd_fails.map(range(6), return_exceptions=True)
    assert out[0::2] == [0, 2, 4]
    assert [type(e) for e in out[1::2]] == [type(out[1])] * 3
    assert all(isinstance(e, ValueError) and isinstance(e, faas.FunctionError) for e in out[1::2])
    assert [str(e) for e in out[1::2]] == ["odd 1", "odd 3", "odd 5"]


def test_imap_is_lazy_with_back_pressure_on_an_infinite_generator(conn):
    @faas.function(name="ident")
    def ident(x):
        return x

    produced = []

    def numbers():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = ident.imap(numbers(), max_outstanding=3)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    # it read only what it needed: the 5 consumed plus at most 3 outstanding
    assert len(produced) <= 5 + 3
    it.close()


def test_imap_unordered_yields_as_they_finish_and_break_cancels(conn):
    @faas.function(name="sleeper", timeout=60)
    def sleeper(seconds):
        time.sleep(seconds)
        return seconds

    assert list(sleeper.imap([1.5, 0.1, 0.8], ordered=False)) == [0.1, 0.8, 1.5]
    assert list(sleeper.imap([0.6, 0.1, 0.3])) == [0.6, 0.1, 0.3]

    for first in sleeper.imap([0.1, 30, 30, 30], max_outstanding=4):
        break
    assert first == 0.1
    deadline = time.monotonic() + 15
    while (counts := _statuses("sleeper")).get("cancelled", 0) < 3:
        assert time.monotonic() < deadline, f"breaking out of imap did not cancel: {counts}"
        time.sleep(0.1)


def test_imap_raises_at_the_failing_item_unless_return_exceptions(conn):
    @faas.function(name="fails_at_two")
    def fails_at_two(x):
        if x == 2:
            raise RuntimeError("two")
        return x

    got = []
    with pytest.raises(RuntimeError) as info:
        for value in fails_at_two.imap(range(5), max_outstanding=2):
            got.append(value)
    assert got == [0, 1] and info.value.details["index"] == 2
    out = list(fails_at_two.imap(range(4), return_exceptions=True))
    assert out[:2] == [0, 1] and isinstance(out[2], RuntimeError) and out[3] == 3


def test_as_completed_and_wait(conn):
    @faas.function(name="nap", timeout=60)
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    futures = [nap.spawn(s) for s in (1.2, 0.1, 0.6)]
    assert [f.result() for f in faas.as_completed(futures)] == [0.1, 0.6, 1.2]

    quick, slow = nap.spawn(0.1), nap.spawn(30)
    done, not_done = faas.wait([quick, slow], return_when=faas.FIRST_COMPLETED)
    assert done == {quick} and not_done == {slow}
    assert slow.cancel() and slow.status == "cancelled"
    with pytest.raises(faas.InvalidParameter, match="FIRST_COMPLETED"):
        faas.wait([quick], return_when="sometime")


def test_invocations_lists_and_filters(conn):
    @faas.function(name="listed")
    def listed(x):
        if x:
            raise ValueError("no")
        return x

    listed.map([0, 0, 1], return_exceptions=True)
    newest = faas.invocations(function="listed", limit=10)
    assert [i.function for i in newest] == ["listed"] * 3
    assert sorted(i.status for i in newest) == ["failed", "succeeded", "succeeded"]
    failed = faas.invocations(function="listed", status="failed")
    assert len(failed) == 1 and isinstance(failed[0].error, ValueError)
    with pytest.raises(faas.InvalidParameter, match="status"):
        faas.invocations(status="sideways")


def test_plain_text_outside_a_widget_frontend(server, tmp_path):
    script = textwrap.dedent("""
        import time, jupyter_faas as faas
        @faas.function(name="text_mode", timeout=30)
        def text_mode(x):
            print(f"working on {x}", flush=True)
            time.sleep(1.5 if x == "long" else 0)
            return x
        text_mode.map(range(3))
        text_mode("long")
        text_mode("short")
    """)
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for i in range(3):
        assert f"[{i}] working on {i}" in err
    assert "text_mode: 3/3 done · 3 succeeded · 0 failed" in err
    assert "[text_mode] working on long" in err and "[text_mode] succeeded in" in err
    assert "Billed:" in err
    # a call too short for its view prints its handler's lines as they were printed, once
    assert proc.stdout.splitlines() == ["working on short"], proc.stdout
    assert "working on short" not in err
    # no widget noise
    assert "VBox" not in err and "HTML(" not in err and "IntProgress" not in err


# ---- in a kernel ------------------------------------------------------------------------------

def test_a_short_calls_prints_show_in_its_cell(kernel):
    """A call that ends before its view would appear prints its handler's lines in the cell,
    stdout as stdout and stderr as stderr, as the same function called locally would; a
    flood is cut to its last lines with a pointer to the rest."""
    kernel.run(textwrap.dedent("""
        @faas.function(name="short_prints")
        def short_prints(n):
            import sys
            print("to stdout")
            print("to stderr", file=sys.stderr)
            for i in range(n):
                print("line", i)
            return n
        short_prints.deploy()
        short_prints(0)  # warm: the calls below take milliseconds, far from the view's second
    """))
    msg_id = kernel.execute("short_prints(0)")
    kernel.pump(lambda: msg_id in kernel.idle, 60)
    assert kernel.error(msg_id) is None
    streams = [(m["content"]["name"], m["content"]["text"]) for m in kernel.outputs[msg_id]
               if m["msg_type"] == "stream"]
    assert "".join(t for n, t in streams if n == "stdout") == "to stdout\n", streams
    assert "".join(t for n, t in streams if n == "stderr") == "to stderr\n", streams

    out, err = kernel.run("short_prints(1000)")
    assert err is None, err
    assert "line 999" in out and "line 0\n" not in out
    assert "earlier lines not shown; all are kept" in out


def test_cancel_button_stops_a_blocking_map_like_ctrl_c(kernel):
    msg_id = kernel.execute(textwrap.dedent("""
        @faas.function(name="slow_items", timeout=120)
        def slow_items(x):
            print(f"item {x} starting", flush=True)
            time.sleep(60)
            return x
        slow_items.map(range(10), concurrency=2)
    """))
    kernel.pump(lambda: kernel.find("ButtonModel", description="Cancel") is not None, 60)
    kernel.pump(lambda: any("starting" in w["state"].get("value", "")
                            for w in kernel.widgets.values() if w["model"] == "HTMLModel"), 30)
    kernel.click(kernel.find("ButtonModel", description="Cancel"))
    # the items sleep 60 s: the cell ending within the pump's 30 s is the click stopping the map
    kernel.pump(lambda: msg_id in kernel.idle, 30)
    err = kernel.error(msg_id)
    assert err is not None and err["ename"] == "Cancelled", err
    # the two running items were killed; the eight behind the cap never started (through the
    # kernel's leased environments they were never accepted, so they have no row)
    counts = _statuses("slow_items")
    assert counts == {"cancelled": 2}, counts
    kernel.run("import jupyter_faas as faas")
    out, err = kernel.run("print(sum(1 for i in faas.invocations(function='slow_items') "
                          "if i._row.get('started_at')))")
    assert err is None and out.strip() == "2", (out, err)
    out, err = kernel.run("print(1 + 1)")
    assert out.strip() == "2" and err is None


def test_failed_count_and_item_view_while_the_cell_blocks(kernel):
    msg_id = kernel.execute(textwrap.dedent("""
        @faas.function(name="third_fails", timeout=120)
        def third_fails(x):
            print(f"input was {x}", flush=True)
            if x == 3:
                raise ZeroDivisionError("item three divides by zero")
            time.sleep(8 if x == 0 else 0)
            return x
        out = third_fails.map(range(6), return_exceptions=True)
    """))
    kernel.pump(lambda: kernel.find("ButtonModel", description="Failed (1)") is not None, 60)
    assert msg_id not in kernel.idle, "the map ended before the test could click"
    kernel.click(kernel.find("ButtonModel", description="Failed (1)"))

    def detail() -> str:
        values = [w["state"].get("value", "") for w in kernel.widgets.values() if w["model"] == "HTMLModel"]
        return next((v for v in values if "<b>item 3</b>" in v), "")
    kernel.pump(lambda: "ZeroDivisionError" in detail(), 15)
    assert msg_id not in kernel.idle, "the click was only handled after the cell ended"
    text = detail()
    assert "item three divides by zero" in text and "(3)" in text    # error and input
    assert "input was 3" in text and "REPORT" in text                # its own logs and REPORT
    assert "line 5, in third_fails" in text                          # the remote traceback
    assert "white-space:pre;overflow-x:auto" in text                 # not wrapped at ^^^^ markers
    # pick another item by number
    kernel.set_value(kernel.find("BoundedIntTextModel", description="item"), 1)
    kernel.click(kernel.find("ButtonModel", description="Show"))
    kernel.pump(lambda: any("<b>item 1</b>" in w["state"].get("value", "")
                            for w in kernel.widgets.values() if w["model"] == "HTMLModel"), 15)
    kernel.pump(lambda: msg_id in kernel.idle, 60)
    assert kernel.error(msg_id) is None


def test_ended_views_say_what_ran_and_their_cancel_is_off(kernel):
    """imap's view is titled imap; a finished pane with no output says "(no output)", not
    "(no output yet)"; once a map has ended its Cancel is disabled and no longer red."""
    for call, kind in (("list(quiet.imap(range(3)))", "imap"), ("quiet.map(range(3))", "map"),
                       ("quiet.starmap([(0,), (1,), (2,)])", "starmap")):
        before = set(kernel.widgets)
        out, err = kernel.run(textwrap.dedent(f"""
            @faas.function(name="quiet", timeout=30)
            def quiet(x):
                return x
            print({call})
        """))
        assert err is None and "[0, 1, 2]" in out, (out, err)
        new = {c: w for c, w in kernel.widgets.items() if c not in before}
        htmls = [w["state"].get("value", "") for w in new.values() if w["model"] == "HTMLModel"]
        assert any(f"<b>quiet</b>.{kind} · 3 items · done" in v for v in htmls), htmls
        assert not any("no output yet" in v for v in htmls), htmls
        assert any("(no output)" in v for v in htmls), htmls
        cancel = [w["state"] for w in new.values()
                  if w["model"] == "ButtonModel" and w["state"].get("description") == "Cancel"]
        assert len(cancel) == 1 and cancel[0]["disabled"] is True, cancel
        assert cancel[0]["button_style"] == "", cancel


def test_log_flood_keeps_the_kernel_responsive_and_the_store_complete(kernel):
    lines = 200_000
    out, err = kernel.run(textwrap.dedent("""
        @faas.function(name="flood", timeout=120)
        def flood(n):
            for i in range(n):
                print("flood line", i)
            return n
        flood.deploy()
    """))
    assert err is None, err
    # While the flood runs, the kernel keeps executing cells promptly.
    start = len(kernel.log)
    msg_id = kernel.execute(f"fut = flood.spawn({lines}); rid = fut.request_id")
    kernel.pump(lambda: msg_id in kernel.idle, 30)
    running_seen = False
    while True:
        out, err = kernel.run("print(fut.status, len(fut.logs))", timeout=30)
        status = out.split()[0]
        running_seen |= status == "running"
        if status != "running" and status != "queued":
            break
    # the kernel executed cells while the flood was running (not only once it was over)
    assert status == "succeeded" and running_seen
    # Shown in a widget, the flood becomes a bounded number of small updates.
    msg_id = kernel.execute(f"flood.map([{lines}])")
    kernel.pump(lambda: msg_id in kernel.idle, 120)
    assert kernel.error(msg_id) is None
    during = [m for _, m in kernel.log[start:]]
    assert len(during) < 3000, f"{len(during)} iopub messages for a flood of {lines} lines"
    panes = [w["state"]["value"] for w in kernel.widgets.values()
             if w["model"] == "HTMLModel" and "flood line" in w["state"].get("value", "")]
    assert panes and all(p.count("flood line") <= 200 for p in panes)
    assert "earlier lines not shown" in panes[-1]
    # The pane's count and its last line agree: the newest lines are the ones shown.
    final = html.unescape(re.sub(r"<[^>]+>", "", panes[-1].split("<pre", 1)[1].split(">", 1)[1]))
    shown = final.strip().splitlines()
    assert shown[-1] == f"[0] flood line {lines - 1}", shown[-3:]
    assert shown == [f"[0] flood line {i}" for i in range(lines - len(shown), lines)], shown[:3]
    assert f"{lines - len(shown):,} earlier lines not shown" in panes[-1]
    # Every line is in the store.
    out, err = kernel.run("print(sum(1 for l in faas.Invocation.from_id(rid).logs "
                          "if l.startswith('flood line')))", timeout=60)
    assert err is None and int(out) == lines


def test_reattach_from_a_new_kernel_after_the_first_one_died(server, tmp_path):
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    first = RawKernel(env, str(tmp_path))
    try:
        out, err = first.run(textwrap.dedent("""
            import time, jupyter_faas as faas
            @faas.function(name="outlives_kernel", timeout=60)
            def outlives_kernel(n):
                for i in range(n):
                    print(f"tick {i}", flush=True)
                    time.sleep(0.5)
                return f"finished {n}"
            print(outlives_kernel.spawn(12).request_id)
        """))
        assert err is None, err
        request_id = out.strip()
    finally:
        first.kill()   # the kernel that started it dies; the invocation does not

    second = RawKernel(env, str(tmp_path))
    try:
        out, err = second.run(textwrap.dedent(f"""
            import jupyter_faas as faas
            inv = faas.Invocation.from_id({request_id!r})
            print(inv.status, inv.function)
            print(any(l.startswith("tick") for l in inv.logs))
        """))
        assert err is None, err
        assert out.split() == ["running", "outlives_kernel", "True"]
        out, err = second.run("print(inv.result); print(inv.status); print(len(inv.logs)); "
                              "print(inv.report.duration_ms > 5000)", timeout=60)
        assert err is None, err
        # 12 ticks, INIT_START (a cold start), START, END, REPORT
        assert out.split("\n")[:4] == ["finished 12", "succeeded", str(12 + 4), "True"]
        # live lines reached the re-attached future while it ran
        out, err = second.run("print(sum(l.startswith('tick') for l in inv._future.logs))")
        assert int(out) >= 1
    finally:
        second.kill()


def test_map_submissions_are_batched_on_one_websocket(conn):
    conn.use_leases = False  # the server's own path (a remote client's, or with leases off)

    @faas.function(name="noop_batch")
    def noop_batch(x):
        return x

    frames = []
    original = conn._send_frames

    async def counting(batch):
        frames.extend(batch)
        await original(batch)
    conn._send_frames = counting
    try:
        assert noop_batch.map(range(2000), show=False) == list(range(2000))
    finally:
        conn._send_frames = original
    assert 1 <= len(frames) <= 20, f"{len(frames)} frames for 2,000 items"


def test_huge_log_lines_are_cut_on_the_wire_and_kept_whole_in_the_store(conn):
    @faas.function(name="wide_lines", timeout=60)
    def wide_lines(n, width):
        for i in range(n):
            print(str(i % 10) * width)
        return n

    # 600 lines of 100 KB: uncut, one log frame's header would be tens of megabytes
    fut = wide_lines.spawn(600, 100_000)
    assert fut.result(timeout=60) == 600
    streamed = [line for line in fut.logs if line[:1].isdigit()]
    assert streamed and all(len(line) < 400 and line.endswith("the store has it all]") for line in streamed)
    stored = [line for line in faas.Invocation.from_id(fut.request_id).logs if line[:1].isdigit()]
    assert len(stored) == 600 and all(len(line) == 100_000 for line in stored)
    # the connection is still healthy afterwards
    assert wide_lines(1, 3) == 1


def test_map_results_share_frames_and_other_items_start_lines_wait_for_the_log_flush(conn, monkeypatch):
    """A map's results come back several to a ``done`` frame, and a ``done`` frame is not
    preceded by a ``log`` frame of the START lines of items still running (those ride in
    their own ``done`` or the timed log flush), yet every future has its platform lines."""
    from kernel_workers import wire

    conn.use_leases = False  # the server's own path (a remote client's, or with leases off)

    @faas.function(name="noop_frames")
    def noop_frames(x):
        return x

    noop_frames(0)  # deployed and warm
    kinds = []
    unpack = wire.unpack

    def counting(frame):
        header, body = unpack(frame)
        if header["k"] in ("done", "log"):
            kinds.append((header["k"], len(header.get("items") or header.get("logs") or ())))
        return header, body
    monkeypatch.setattr(wire, "unpack", counting)
    items = 1000
    futures = [noop_frames.spawn(0)]  # a lone call: its result needs no company
    assert futures[0].result() == 0
    assert noop_frames.map(range(items), show=False) == list(range(items))
    monkeypatch.setattr(wire, "unpack", unpack)

    done = [n for kind, n in kinds if kind == "done"]
    logs = [n for kind, n in kinds if kind == "log"]
    assert sum(done) == items + 1
    assert max(done) > 1, "every result came in a frame of its own"
    # Before, a log frame (other items' START lines) went before nearly every done frame.
    assert len(logs) <= items / 4, f"{len(logs)} log frames for {items} items"


def test_every_map_item_is_a_recorded_invocation_with_its_platform_lines(conn):
    @faas.function(name="noop_recorded")
    def noop_recorded(x):
        return x * 2

    items = 200
    futures = map_futures(noop_recorded)
    assert noop_recorded.map(range(items), show=False) == [2 * i for i in range(items)]
    assert len(futures) == items
    rids = [f.request_id for f in futures]
    assert len(set(rids)) == items
    for fut in futures:
        # the live future has its REPORT's figures (its platform lines: on the server's path
        # they stream live, a leased item's are made from its row when read; both below)
        assert fut.report is not None and fut.report.memory_size_mb == 128
        lines = [line for line in fut.logs if not line.startswith("INIT_START")]  # cold starts
        if lines:
            assert lines[0].startswith(f"START RequestId: {fut.request_id}")
            assert lines[-1].startswith(f"REPORT RequestId: {fut.request_id}\tDuration: ")
    rows = {inv.request_id: inv for inv in faas.invocations(function="noop_recorded", limit=items + 10)}
    assert set(rows) == set(rids)
    for rid in rids[:: 10]:
        stored = faas.Invocation.from_id(rid)
        assert stored.status == "succeeded" and stored.report.billed_duration_ms >= 1
        lines = [line for line in stored.logs if not line.startswith("INIT_START")]
        assert lines[0].startswith(f"START RequestId: {rid}") and lines[-2] == f"END RequestId: {rid}"
        assert lines[-1].startswith(f"REPORT RequestId: {rid}")
