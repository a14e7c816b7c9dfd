"""The events view: async invocations and trigger firings in the cell (counts with "retrying" =
queued again after a failed attempt, attempts, outcomes), as a widget in a kernel and as text."""

from __future__ import annotations

import os
import textwrap

import pytest

from jupyter_faas.display.events_view import counts, text_lines
from kernels import RawKernel


def test_counts_call_a_queued_invocation_with_attempts_retrying():
    rows = [{"request_id": "a", "status": "queued", "attempts": 0},
            {"request_id": "b", "status": "queued", "attempts": 1},
            {"request_id": "c", "status": "running", "attempts": 2},
            {"request_id": "d", "status": "succeeded", "attempts": 3, "triggered_by": "async"},
            {"request_id": "e", "status": "timed_out", "attempts": 3, "error_type": "Sandbox.Timedout"}]
    assert counts(rows) == {"queued": 1, "retrying": 1, "running": 1, "succeeded": 1, "failed": 1}
    lines = text_lines("f", rows)
    assert lines[0] == "f: 5 invocations · 1 queued · 1 retrying · 1 running · 1 succeeded · 1 failed · 9 attempts"
    assert "async" in lines[4] and "attempts=3" in lines[4] and lines[5].endswith("Sandbox.Timedout")


@pytest.fixture
def kernel(server, conn, tmp_path):
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    k = RawKernel(env, str(tmp_path))
    out, err = k.run("import jupyter_faas as faas")
    assert err is None, err
    yield k
    k.kill()


def test_an_async_invocation_shows_its_retry_then_its_outcome(kernel, tmp_path):
    out, err = kernel.run(textwrap.dedent(f"""
        @faas.function(name="retry_view", retries=2, retry_delay=2.0)
        def flaky(event):
            import pathlib
            p = pathlib.Path({str(tmp_path)!r}, "tried")
            if not p.exists():
                p.write_text("")
                raise ValueError("first attempt fails")
            return "ok"
        inv = flaky.invoke_async({{"k": 1}})
        inv
    """))
    assert err is None, err

    def html_values():
        return [w["state"].get("value", "") for w in kernel.widgets.values() if w["model"] == "HTMLModel"]

    def view_says(text):
        return lambda: any(text in v for v in html_values())
    kernel.pump(view_says("retrying <b>1</b>"), 60)      # queued again, waiting for attempt 2
    kernel.pump(view_says("succeeded <b>1</b>"), 60)
    assert any("<td style='text-align:right'>2</td>" in v for v in html_values())   # two attempts
    # and a trigger's view lists its firings with what fired them
    out, err = kernel.run("t = flaky.schedule('rate(1 second)')\nt")
    assert err is None, err
    kernel.pump(view_says("<td>schedule</td>"), 60)
    out, err = kernel.run("t.delete()\nfaas.triggers(function='retry_view')")
    assert err is None and "no triggers" in out, (out, err)
