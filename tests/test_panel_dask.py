"""The side panel of a server on a Dask cluster: real JupyterLab, a real FaaS server whose Dask
backend is a LocalCluster of two worker processes (``--FaaSServer.dask_scheduler=local:2``),
and headless Chromium.

Per invocation the panel names the worker that ran it (a column in a wide panel, a field in the
detail); the cluster view lists the workers with this server's environments on each (busy or
idle, with their memory) and links to the Dask dashboard.  Screenshots go to tests/artifacts.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from conftest import ServerProcess, wait_for
from panel_fixtures import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LabProcess, browser_env

PANEL = "#jupyter-faas-panel"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("panel-dask")
    server = ServerProcess(base, "--FaaSServer.backend=dask", "--FaaSServer.dask_scheduler=local:2",
                           "--FaaSServer.throttle_wait=30").start()
    lab = LabProcess(base, server.env)
    try:
        lab.start()
        yield {"server": server, "lab": lab}
    finally:
        lab.stop()
        server.stop()


@pytest.fixture(scope="module")
def conn(stack):
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    server = stack["server"]
    yield faas.connect(server.url, server.token)
    discovery.reset()


@pytest.fixture(scope="module")
def browser():
    import os

    from playwright.sync_api import sync_playwright
    os.environ.update(browser_env())
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _lab_get(lab, path):
    req = urllib.request.Request(f"{lab.url}/jupyter-faas/api/{path}",
                                 headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _open(page, lab, width: int | None) -> None:
    """JupyterLab in a fresh workspace, the Lambda tab open; the sidebar dragged to ``width``."""
    page.goto(f"{lab.url}/lab/workspaces/dask-{uuid.uuid4().hex[:8]}?token={lab.token}")
    tab = page.locator('.jp-SideBar [data-id="jupyter-faas-panel"]')
    tab.wait_for(timeout=60_000)
    tab.click()
    page.locator(f"{PANEL} .jp-FaaS-row").first.wait_for(timeout=30_000)
    if width is not None:
        handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
        page.mouse.down()
        page.mouse.move(width, box["y"] + 200, steps=5)
        page.mouse.up()


def test_worker_per_invocation_and_the_cluster_view(stack, conn, browser):
    import jupyter_faas as faas

    @faas.function(name="panel_dask_square", memory=256, timeout=30, backend="dask", show=False)
    def square(x):
        return x * x

    @faas.function(name="panel_dask_wait", memory=128, timeout=120, backend="dask", show=False)
    def wait_for_file(path):
        import os
        import time as _t
        print("waiting", flush=True)
        while not os.path.exists(path):
            _t.sleep(0.05)
        return "released"

    assert square.map(range(8), concurrency=4) == [x * x for x in range(8)]
    rows = conn.request("GET", "/faas/api/invocations",
                        params={"function": "panel_dask_square", "limit": 8})["invocations"]
    workers_of = {r["request_id"]: r["environment_id"].split("@", 1)[1] for r in rows}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers_of.values())
    release = stack["server"].base / f"release-{uuid.uuid4().hex[:6]}"
    busy = wait_for_file.spawn(str(release))
    wait_for(lambda: "waiting" in busy.logs, timeout=60, what="the long invocation to start")

    status = _lab_get(stack["lab"], "status")["backends"]["dask"]     # through the panel's proxy
    addresses = [w["address"] for w in status["workers"]]
    assert len(addresses) == 2 and status["dashboard"].startswith("http://")
    assert status["memory_enforcement"].endswith("(on the Dask workers)")

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        # At the sidebar's default width the worker column gives way (the detail names it).
        _open(page, stack["lab"], width=None)
        rid = next(iter(workers_of))
        row = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{rid}"]')
        row.wait_for(timeout=30_000)
        assert not row.locator(".jp-FaaS-col-worker").is_visible()
        row.click()
        worker_field = page.locator(f'{PANEL} .jp-FaaS-detail [data-field="worker"] dd')
        wait_for(lambda: worker_field.count() and worker_field.inner_text() == workers_of[rid],
                 what="the worker in the invocation's detail")

        # Widened: a worker column, each row naming the worker its environment_id names.
        _open(page, stack["lab"], width=760)
        page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{rid}"]').wait_for(timeout=30_000)
        for request_id, worker in workers_of.items():
            cell = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{request_id}"] .jp-FaaS-col-worker')
            wait_for(cell.is_visible, what=f"the worker column of {request_id}")
            assert cell.get_attribute("data-worker") == worker
            assert cell.inner_text() == worker.removeprefix("tcp://")
            assert cell.get_attribute("title") == cell.inner_text()      # cut only with its title
        page.locator(f"{PANEL} .jp-FaaS-invocations").screenshot(path=str(_artifact("panel-dask-invocations.png")))

        # The cluster view: both workers, the environments on them, one of them busy, the dashboard.
        view = page.locator(f"{PANEL} .jp-FaaS-cluster")
        view.wait_for(timeout=30_000)
        for address in addresses:
            page.locator(f'{PANEL} .jp-FaaS-worker[data-worker="{address}"]').wait_for(timeout=30_000)
        link = view.locator("a.jp-FaaS-dashboard")
        assert link.get_attribute("href") == status["dashboard"] and link.get_attribute("target") == "_blank"
        busy_env = view.locator('.jp-FaaS-env[data-state="busy"]', has_text="panel_dask_wait")
        busy_env.wait_for(timeout=30_000)
        envs = view.locator('.jp-FaaS-env', has_text="panel_dask_square")
        wait_for(lambda: envs.count() >= 1, what="the square function's environments")
        wait_for(lambda: envs.first.inner_text().endswith(" MB"), timeout=30,
                 what="an environment's memory, from its worker's heartbeat")
        facts = view.locator(".jp-FaaS-clusterFacts").first.inner_text()
        assert "2 workers" in facts and "memory limits: " in facts
        budget = view.locator(".jp-FaaS-clusterBudget")
        wait_for(lambda: budget.inner_text() == f"memory budget: 128 of {status['memory_budget_mb']} MB in use",
                 what="the cluster's budget with the running invocation")
        memory = view.locator(".jp-FaaS-workerMemory").first.inner_text()
        assert memory.startswith("worker ") and " of " in memory and "environments " in memory
        view.scroll_into_view_if_needed()
        view.screenshot(path=str(_artifact("panel-dask-cluster.png")))

        # The long one ends: its environment shows idle.
        release.write_text("go")
        assert busy.result(timeout=60) == "released"
        view.locator('.jp-FaaS-env[data-state="idle"]', has_text="panel_dask_wait").wait_for(timeout=30_000)
        fits = page.evaluate("""(sel) => { const panel = document.querySelector(sel);
            return panel.scrollWidth <= panel.clientWidth + 1; }""", PANEL)
        assert fits, "the cluster view is wider than the panel"
    finally:
        ctx.close()


def test_no_cluster_view_without_a_dask_backend(server, browser):
    """A server with the local backend only: no cluster view, no worker column."""
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    faas.connect(server.url, server.token)
    try:
        faas.function(name="panel_local_only", show=False)(lambda x: x)(1)
    finally:
        discovery.reset()
    lab = LabProcess(server.base, server.env).start()
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        _open(page, lab, width=760)
        page.locator(f"{PANEL} .jp-FaaS-function").first.wait_for(timeout=30_000)
        wait_for(lambda: page.locator(f"{PANEL} .jp-FaaS-cluster").count() == 1, what="the view's node")
        assert not page.locator(f"{PANEL} .jp-FaaS-cluster").is_visible()
        assert not page.locator(f"{PANEL} .jp-FaaS-col-worker").first.is_visible()
    finally:
        ctx.close()
        lab.stop()


def _artifact(name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
