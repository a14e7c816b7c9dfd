"""An INIT over its limits, against a real server: over the INIT limit (Lambda's 10 s; this
server's ``--FaaSServer.init_timeout`` is lowered so the test does not wait 10 s) it is
``Runtime.InitTimeout``; over the function's memory it is ``Runtime.OutOfMemory`` with the
peak and the limit, as a handler's OOM is.  Either way the log has ``INIT_START`` and what
INIT printed, and the REPORT its Init Duration; a decorated ``init=``, a ``%%lambda`` cell's
top-level code, with and without a snapshot template, and provisioned environments alike.
"""

from __future__ import annotations

import pytest

import jupyter_faas as faas
from jupyter_faas.client import discovery
from jupyter_faas.client.cell import CellFunction

#: what the hog keeps (a module global: a test function's locals would be closures)
held = None


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from conftest import ServerProcess
    server = ServerProcess(tmp_path_factory.mktemp("faas"), "--FaaSServer.init_timeout=1").start()
    faas.connect(server.url, server.token)
    yield server
    discovery.reset()
    server.stop()


def slow_init():
    import time
    print("INIT: loading slowly")
    time.sleep(60)  # killed at the INIT limit long before


def hog_init():
    global held
    print("INIT: loading 300 MB")
    held = bytearray(300 * 1024 * 1024)  # touched (zeroed): charged to the environment


def handler(x):
    return x


def _init_lines_before_error(inv, printed: str) -> None:
    logs = inv.logs
    assert logs[0].startswith("INIT_START Runtime Version: python:"), logs
    assert printed in logs, logs
    error_at = next(i for i, line in enumerate(logs) if line.startswith("[ERROR]"))
    assert logs.index(printed) < error_at
    assert not any(line.startswith("START") for line in logs)  # the handler never started
    assert inv.report.init_duration_ms is not None


@pytest.mark.parametrize("snapshot", [True, False])
def test_an_init_over_the_init_limit_is_an_init_timeout_not_a_kill_from_outside(limited, snapshot):
    f = faas.function(name=f"slow_init_{snapshot}", init=slow_init, snapshot=snapshot, timeout=3)(handler)
    inv = f.invoke(1)
    assert inv.status == "timed_out"
    assert isinstance(inv.error, faas.InvocationTimeout)
    error = inv.error.details["error"]
    assert error["errorType"] == "Runtime.InitTimeout"
    message = error["errorMessage"]
    assert "INIT did not finish within 1 s (Lambda's INIT limit)" in message
    assert "Move slow work out of INIT" in message and "killed from outside" not in message
    _init_lines_before_error(inv, "INIT: loading slowly")
    assert any("Runtime.InitTimeout" in line for line in inv.logs)


@pytest.mark.parametrize("snapshot", [True, False])
def test_an_init_over_the_memory_limit_is_out_of_memory_with_peak_and_limit(limited, snapshot):
    f = faas.function(name=f"hog_init_{snapshot}", init=hog_init, snapshot=snapshot, memory=128)(handler)
    inv = f.invoke(1)
    assert inv.status == "failed"
    assert isinstance(inv.error, faas.OutOfMemory)
    error = inv.error.details["error"]
    assert error["errorType"] == "Runtime.OutOfMemory"
    assert error["limit_mb"] == 128 and error["peak_mb"] >= 128
    assert "during INIT" in error["errorMessage"] and "limit of 128 MB" in error["errorMessage"]
    assert "Raise memory=" in error["errorMessage"]
    assert inv.report.max_memory_used_mb == error["peak_mb"]  # the figure the message gives
    _init_lines_before_error(inv, "INIT: loading 300 MB")


CELL = """\
import time
print("INIT: the cell loads")
{body}

def handler(event, context):
    return 1
"""


@pytest.mark.parametrize("body,error_type,cls", [
    ("time.sleep(60)", "Runtime.InitTimeout", faas.InvocationTimeout),
    ("TABLE = bytearray(300 * 1024 * 1024)", "Runtime.OutOfMemory", faas.OutOfMemory),
])
def test_a_lambda_cells_top_level_code_over_a_limit_says_so(limited, body, error_type, cls):
    cell = CellFunction(CELL.format(body=body), "<cell>", "handler", set(), {})
    f = faas.function(name=f"cell_{error_type.split('.')[1]}", memory=128, timeout=3)(cell)
    inv = f.invoke({})
    assert isinstance(inv.error, cls), inv.error
    assert inv.error.details["error"]["errorType"] == error_type
    assert "INIT" in inv.error.details["error"]["errorMessage"]
    _init_lines_before_error(inv, "INIT: the cell loads")


@pytest.mark.parametrize("init,error_type,says", [
    (slow_init, "Runtime.InitTimeout", "INIT did not finish within 1 s"),
    (hog_init, "Runtime.OutOfMemory", "during INIT: INIT used"),
])
def test_provisioned_environments_fail_with_the_same_message(limited, init, error_type, says):
    f = faas.function(name=f"prov_{init.__name__}", init=init, memory=128)(handler)
    with pytest.raises(faas.FunctionError, match="FAILED") as info:
        f.provision(1)
    assert error_type in str(info.value) and says in str(info.value)
    state = f.provisioned()
    assert state["status"] == "FAILED"
    assert state["reason"].startswith(f"{error_type}: ") and says in state["reason"]
    assert "crash" not in state["reason"]
    assert f.provision(0) is None
