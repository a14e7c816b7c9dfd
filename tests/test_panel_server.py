"""The panel's jupyter_server extension without a browser: discovery, autostart, the allow-list.

A real JupyterLab with temporary Jupyter dirs and no FaaS server running: the first panel
request starts one (the client's discovery), and when that server stops the next request
finds its successor.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import psutil
import pytest

from panel_fixtures import LabProcess

pytestmark = pytest.mark.timeout(180)


def _request(lab, path, method="GET", body=None, token=True):
    headers = {"Authorization": f"token {lab.token}"} if token else {}
    req = urllib.request.Request(f"{lab.url}/jupyter-faas/api/{path}", method=method, data=body,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=90) as resp:
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None


def _error(lab, path, method="GET", body=None, token=True):
    with pytest.raises(urllib.error.HTTPError) as info:
        _request(lab, path, method, body, token)
    return info.value.code, json.loads(info.value.read() or b"{}")


@pytest.fixture
def lab(tmp_path):
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    lab = LabProcess(tmp_path, env).start()
    yield lab
    lab.stop()
    # Whatever FaaS server the panel started for this test goes too.
    info_file = tmp_path / "runtime" / "jupyter_faas-server.json"
    if info_file.exists():
        pid = json.loads(info_file.read_text())["pid"]
        _stop(pid)


def _stop(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        kids = proc.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        gone, alive = psutil.wait_procs([proc, *kids], timeout=20)
        assert not alive, f"outlived their server: {alive}"
    except psutil.NoSuchProcess:
        pass


def test_first_request_starts_a_server_and_a_stopped_one_is_replaced(lab, tmp_path):
    runtime = tmp_path / "runtime" / "jupyter_faas-server.json"
    assert not runtime.exists()
    status, body = _request(lab, "status")
    assert status == 200 and body["running"] == 0
    first = json.loads(runtime.read_text())
    assert psutil.pid_exists(first["pid"])
    assert _request(lab, "metrics/functions")[1] == {
        "functions": [], "prices": {"per_gb_second": 0.0000166667, "per_request": 0.0000002}}

    _stop(first["pid"])
    status, _ = _request(lab, "status")  # refused, so discovered (and started) again
    second = json.loads(runtime.read_text())
    assert status == 200 and second["pid"] != first["pid"]


def test_only_the_panels_endpoints_and_only_with_jupyters_credentials(lab):
    code, body = _error(lab, "status", token=False)
    assert code == 403
    for method, path in (("POST", "shutdown"), ("POST", "functions"), ("GET", "invocations/x/result"),
                         ("GET", "ws"), ("GET", "events"), ("PUT", "functions/f")):
        code, body = _error(lab, path, method, body=b"{}" if method != "GET" else None)
        assert code in (404, 405), (method, path, code)
    code, body = _error(lab, "functions/nope")
    assert code == 404 and "Function not found: nope" in body["message"]
    code, body = _error(lab, "functions/nope/invocations", "POST", b"{not json")
    assert code == 400 and "Could not parse request body into json" in body["message"]
    code, body = _error(lab, "metrics/functions/nope?minutes=0")
    assert code in (400, 404)
    code, body = _error(lab, "invocations?status=bogus")
    assert code == 400 and "bogus" in body["message"]


def test_version_reports_the_package_and_the_faas_server(lab):
    """What the panel compares with its own version at start (labextension/src/version.ts)."""
    import jupyter_faas
    status, body = _request(lab, "version")
    assert status == 200
    assert body == {"extension": jupyter_faas.__version__, "server": jupyter_faas.__version__}
    assert _error(lab, "version", token=False)[0] == 403


def test_the_panel_the_package_and_package_json_carry_one_version():
    import re
    from pathlib import Path

    import jupyter_faas
    root = Path(__file__).resolve().parent.parent / "labextension"
    panel = re.search(r"PANEL_VERSION = '([^']+)'", (root / "src" / "version.ts").read_text())[1]
    package = json.loads((root / "package.json").read_text())["version"]
    assert panel == package == jupyter_faas.__version__
