"""What a handler gets and gives back: its REPORT, async handlers, Lambda's context, current code."""

import re

import pytest

import jupyter_faas as faas


def test_report_prints_as_lambdas_report_line(conn):
    @faas.function(memory=192, name="reported")
    def reported(x):
        return x

    inv = reported.invoke(1)
    text = str(inv.report)
    assert re.fullmatch(
        rf"REPORT RequestId: {inv.request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        rf"Memory Size: 192 MB\tMax Memory Used: \d+ MB\t(Init Duration: \d+\.\d\d ms\t)?"
        rf"Cost: \$[0-9.e-]+ \([0-9.e-]+ GB-s\)", text), text
    assert repr(inv.report) == text  # what a notebook cell shows: no dataclass, no float noise
    assert inv.report.cost_usd == float(f"{inv.report.cost_usd:.4g}")
    stored = faas.Invocation.from_id(inv.request_id).report
    assert str(stored).startswith(f"REPORT RequestId: {inv.request_id}\tDuration: ")
    fut = reported.spawn(2)
    fut.result(timeout=30)
    assert str(fut.report).startswith(f"REPORT RequestId: {fut.request_id}\t")
