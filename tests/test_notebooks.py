"""The shipped notebooks run top to bottom in a real kernel against a real server."""

import ast
import json
import re
import urllib.request
from pathlib import Path

import nbformat
from nbclient import NotebookClient

QUICKSTART = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def _text(cell) -> str:
    """Everything a code cell showed: streams, results and errors, as text."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts)


def _cell(nb, first_line: str):
    """The code cell whose source starts with ``first_line``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(first_line):
            return cell
    raise AssertionError(f"no code cell starts with {first_line!r}")


def test_committed_quickstart_has_no_outputs():
    nb = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 8 and any(c.cell_type == "markdown" for c in nb.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in code)


def test_quickstart_runs_against_a_server(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    nb = nbformat.read(QUICKSTART, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    # every code cell printed something, so a headless run shows what happened
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert _text(cell).strip(), f"cell printed nothing:\n{cell.source}"
            assert not any(o["output_type"] == "error" for o in cell.outputs)

    assert "jupyter_faas " in _text(_cell(nb, "import jupyter_faas as faas"))
    assert "square(7) = 49" in _text(_cell(nb, "@faas.function(memory=256"))

    calls = _text(_cell(nb, 'print("square.local(8)'))
    assert "square.local(8) = 64" in calls
    assert "square.spawn(9).result() = 81" in calls
    assert "sum of square.map(range(100)) = 328350" in calls

    invoked = _text(_cell(nb, "inv = square.invoke(12)"))
    assert "status: succeeded" in invoked and "result: 144" in invoked
    assert "report: REPORT RequestId: " in invoked and "Memory Size: 256 MB" in invoked
    rid = re.search(r"START RequestId: ([0-9a-f-]{36}) Version: \$LATEST", invoked).group(1)
    assert "squaring 12" in invoked
    assert f"END RequestId: {rid}" in invoked
    assert f"REPORT RequestId: {rid}\tDuration: " in invoked

    deployed = _text(_cell(nb, "%%lambda resize"))
    assert "deployed resize (version 1)" in deployed
    called = _text(_cell(nb, "out = resize("))
    assert "resize returned: {'key': 'a.png', 'mode': 'fast', 'request_id': '" in called

    listed = _text(_cell(nb, "%lambda ls"))
    assert re.search(r"^resize\s+v1\s+memory=256MB timeout=10s$", listed, re.M), listed
    assert re.search(r"^square\s+v\d+\s+memory=256MB timeout=10s$", listed, re.M), listed

    cli = _text(_cell(nb, "%lambda invoke resize"))
    assert "START RequestId: " in cli and "resizing b.png in mode fast" in cli
    assert "REPORT RequestId: " in cli
    result = [o for o in _cell(nb, "%lambda invoke resize").outputs if o["output_type"] == "execute_result"]
    value = ast.literal_eval(result[0]["data"]["text/plain"])
    assert value["key"] == "b.png" and value["mode"] == "fast"
    assert f"START RequestId: {value['request_id']} " in cli

    # the kernel used the server it was given (through the environment), not one of its own
    req = urllib.request.Request(server.url + "/faas/api/functions",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        on_server = {f["name"] for f in json.load(resp)["functions"]}
    assert {"square", "resize", "fails", "slow"} <= on_server

    errors = _text(_cell(nb, "import time"))
    assert "caught ValueError: bad input: 3" in errors
    assert "isinstance(e, faas.FunctionError): True" in errors
    assert "caught faas.InvocationTimeout: " in errors
    assert "Task timed out after 1.00 seconds" in errors


LIVE = QUICKSTART.parent / "live.ipynb"


def test_live_notebook_renders_the_map_widget_with_the_handlers_prints(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    nb = nbformat.read(LIVE, as_version=4)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, kernel_name="python3", timeout=180, store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o["output_type"] == "error" for o in cell.outputs), cell.source

    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    models = [(m["model_name"], m["state"]) for m in state.values()]
    html = [s.get("value", "") for name, s in models if name == "HTMLModel"]
    # the map view counted up to the end: 60 of 60, 3 failed
    assert any(name == "IntProgressModel" and s["value"] == s["max"] == 60 for name, s in models)
    assert any("failed <b>3</b>" in v and "succeeded <b>57</b>" in v for v in html)
    # the handler's prints reached the widget's log pane, tagged by item
    assert any("[16] scoring 16" in v for v in html)
    # the long call's view holds its printed lines and its REPORT
    assert any("epoch 4: loss 0.200" in v for v in html)
    assert any(name == "ButtonModel" and s["description"] == "Cancel" for name, s in models)

    map_cell = _cell(nb, '@faas.function(name="live_score")\ndef score')
    views = [o for o in map_cell.outputs if o["output_type"] == "display_data"]
    assert views and "application/vnd.jupyter.widget-view+json" in views[0]["data"]
    # saved as text too, for renderers without widgets
    assert "live_score: 60/60 done · 57 succeeded · 3 failed" in _text(map_cell)
    assert "failed items: [16, 33, 50]" in _text(map_cell)
    assert "first square over 200: 225" in _text(_cell(nb, '@faas.function(name="live_square")\ndef square'))
    assert "status now: running" in _text(_cell(nb, "request_id = "))
    assert "lines stored: 200000" in _text(_cell(nb, '@faas.function(name="live_chatty", timeout=120)\ndef chatty'))


LAMBDA_API = QUICKSTART.parent / "lambda_api.ipynb"


def test_lambda_api_notebook_creates_and_invokes_with_boto3_and_the_cli(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    nb = nbformat.read(LAMBDA_API, as_version=4)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert _text(cell).strip(), f"cell printed nothing:\n{cell.source}"
            assert not any(o["output_type"] == "error" for o in cell.outputs), cell.source
    assert f"endpoint: {server.url}" in _text(_cell(nb, "import base64"))
    assert "hello Active Successful CodeSha256" in _text(_cell(nb, "lam = faas.boto3_client()"))
    invoked = _text(_cell(nb, "r = lam.invoke"))
    assert "status 200 version $LATEST result {'message': 'hello, Ada'" in invoked
    assert "greeting Ada" in invoked and "REPORT RequestId: " in invoked
    cli = _text(_cell(nb, "aws = Path"))
    assert '"StatusCode": 200' in cli and "hello, CLI" in cli
    stored = _text(_cell(nb, "inv = faas.Invocation.from_id"))
    assert "status: succeeded" in stored and "Memory Size: 256 MB" in stored
    assert "Function not found" in _text(_cell(nb, "try:\n    lam.invoke"))


def test_run_notebook_prints_the_cells_and_no_kernel_transport_warning(server, tmp_path):
    """scripts/run_notebook.py (the quickstart's runner) starts its kernel over IPC, so the
    kernel has nothing to warn about (ipykernel 7 warns about plain-text TCP on stderr)."""
    import os
    import subprocess
    import sys
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello from', 6 * 7)")])
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, JUPYTER_FAAS_URL=server.url, JUPYTER_FAAS_TOKEN=server.token)
    script = Path(__file__).resolve().parent.parent / "scripts" / "run_notebook.py"
    done = subprocess.run([sys.executable, str(script), str(path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "hello from 42" in done.stdout and "every cell succeeded" in done.stdout
    assert "without encryption" not in done.stdout + done.stderr, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ipynb"]  # no stray socket files


INIT_NOTEBOOK = QUICKSTART.parent / "init_and_snapshots.ipynb"


def test_init_and_snapshots_notebook_runs(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    nb = nbformat.read(INIT_NOTEBOOK, as_version=4)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o["output_type"] == "error" for o in cell.outputs), cell.source

    first = _text(_cell(nb, "inv = predict.invoke(1)"))
    lines = first.splitlines()
    assert lines[0].startswith("INIT_START") and lines[1].startswith("INIT: loading a 200 MB model")
    assert "model loaded in the kernel? False" in first
    fanned = _text(_cell(nb, "out = predict.map("))
    # INIT ran once, in one process; every environment was forked from it
    assert re.search(r"environments, INIT ran in \[\d+\], kinds \['snap-start'\]", fanned), fanned
    total = int(re.search(r"total PSS of the environments: (\d+) MB \(RSS of one: (\d+) MB", fanned).group(1))
    one = int(re.search(r"RSS of one: (\d+) MB", fanned).group(1))
    envs = int(re.search(r"(\d+) environments, INIT ran", fanned).group(1))
    assert one >= 200 and total < one * envs / 2  # shared, not copied per environment
    assert "[(9, " in _text(_cell(nb, "import random"))
    provisioned = _text(_cell(nb, "state = predict.provision(2)"))
    assert "READY: 2 of 2 provisioned environments up" in provisioned, provisioned
    assert "ran in a provisioned-concurrency environment; Init Duration: None" in provisioned
    assert "its stored row says: provisioned-concurrency" in provisioned


EVENTS = Path(__file__).resolve().parent.parent / "notebooks" / "events.ipynb"


def test_committed_events_notebook_has_no_outputs():
    nb = nbformat.read(EVENTS, as_version=4)
    nbformat.validate(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")


def test_events_notebook_runs_against_a_server(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    faas.connect(server.url, server.token)
    try:  # someone else's trigger on the same server: the notebook must leave it alone
        other = faas.function(lambda event: event, name="not_events").schedule("rate(1 day)")
    finally:
        discovery.reset()
    nb = nbformat.read(EVENTS, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    faas.connect(server.url, server.token)
    try:
        [kept] = faas.triggers(function="not_events")
        assert kept.id == other.id
        kept.delete()
    finally:
        discovery.reset()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o["output_type"] == "error" for o in cell.outputs), cell.source
    assert "ended: succeeded after 2 attempts" in _text(_cell(nb, '@faas.function(name="events_flaky"'))
    assert "redriven: succeeded" in _text(_cell(nb, "never = "))
    assert "hello ada" in _text(_cell(nb, '@faas.function(name="events_hello_http")'))
    files = _text(_cell(nb, "incoming = "))
    assert "'bucket': 'incoming'" in files and "'key': 'sales+2024.csv'" in files
    queues = _text(_cell(nb, 'jobs = faas.queue("events_jobs"'))
    assert "dead-letter queue holds ['{\"id\": 99, \"bad\": true}']" in queues
    assert "events_resize: added queue events_jobs" in _text(_cell(nb, "%%lambda events_resize"))
    assert "triggers left on this notebook's functions: 0" in _text(_cell(nb, "# Only this notebook's triggers"))
