"""The side panel end to end: real JupyterLab, real FaaS server, real (headless) Chromium.

The FaaS server's store starts with 100,000 invocations of one function, so every test
here also runs against a store of a realistic size. Timings are printed (``pytest -s``) and
written to tests/artifacts/scale.txt with the screenshots, for a look; no test asserts on
them (the figures that matter are the benchmark's S: ``python -m bench``).
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import wait_for
from panel_fixtures import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LabProcess, browser_env

BULK = 100_000
BULK_FUNCTION = "bulk_fn"
PANEL = "#jupyter-faas-panel"

pytestmark = pytest.mark.timeout(240)


def _fill_store(path) -> dict:
    """100,000 finished invocations over the last two days, inserted through the store module."""
    from jupyter_faas.server.store import Store
    store = Store(path)
    store.deploy(BULK_FUNCTION, b"not-called", {"memory": 512, "timeout": 30, "env": {},
                                                "concurrency": 10})
    rng = random.Random(7)
    now = time.time() - 120  # leave the newest two minutes to the live invocations
    rows = []
    for i in range(BULK):
        created = now - rng.random() * 2 * 86400
        status = rng.choices(["succeeded", "failed", "timed_out", "throttled"], [96, 2, 1, 1])[0]
        ran = status != "throttled"
        dur = rng.lognormvariate(3, 1) if ran else None
        rows.append({"request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "function": BULK_FUNCTION, "version": 1, "invocation_type": "Event",
                     "encoding": "json", "status": status, "created_at": created,
                     "started_at": created if ran else None,
                     "ended_at": created + dur / 1000 if ran else None, "duration_ms": dur,
                     "billed_duration_ms": int(dur) + 1 if ran else None, "memory_size_mb": 512,
                     "max_memory_used_mb": 40 if ran else None,
                     "error_type": "ValueError" if status == "failed" else None,
                     "input_summary": '{"n":%d}' % i})
    t0 = time.perf_counter()
    store.add_invocations_bulk(rows)
    insert_s = time.perf_counter() - t0
    timings = {"insert_100k_s": insert_s}
    t0 = time.perf_counter()
    first = store.list_invocations(limit=50)
    timings["first_page_ms"] = (time.perf_counter() - t0) * 1000
    cursor = first[-1]
    for _ in range(1000 // 50):  # walk 20 pages deep with the keyset cursor
        page = store.list_invocations(limit=50, before=cursor["created_at"], before_id=cursor["request_id"])
        cursor = page[-1]
    t0 = time.perf_counter()
    store.list_invocations(limit=50, before=cursor["created_at"], before_id=cursor["request_id"])
    timings["page_after_1000_rows_ms"] = (time.perf_counter() - t0) * 1000
    mid = sorted(r["created_at"] for r in rows)[BULK // 2]
    t0 = time.perf_counter()
    store.list_invocations(limit=50, before=mid, before_id="")
    timings["page_at_row_50000_ms"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    store.list_invocations(function=BULK_FUNCTION, status="failed", limit=50)
    timings["filtered_page_ms"] = (time.perf_counter() - t0) * 1000
    store.close()
    return timings


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from conftest import ServerProcess
    base = tmp_path_factory.mktemp("panel")
    server = ServerProcess(base, "--FaaSServer.throttle_wait=0.5")
    timings = _fill_store(base / "data" / "faas" / "faas.sqlite")
    server.start()
    lab = LabProcess(base, server.env)
    try:
        lab.start()
        yield {"server": server, "lab": lab, "timings": timings}
    finally:
        lab.stop()
        server.stop()


@pytest.fixture(scope="module")
def functions(stack):
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    server = stack["server"]
    faas.connect(server.url, server.token)

    @faas.function(name="e2e_square", memory=256, timeout=10)
    def square(x):
        print("squaring", x)
        return x * x

    @faas.function(name="e2e_slow", memory=128, timeout=30)
    def slow(n):
        import time as _t
        for i in range(n):
            print("tick", i, flush=True)
            _t.sleep(0.3)
        return n

    @faas.function(name="e2e_add", memory=128, timeout=10)
    def add(event):
        return event["a"] + event["b"]

    @faas.function(name="e2e_boom", memory=128, timeout=10)
    def boom(what):
        print("about to fail", file=sys.stderr)
        raise ValueError(f"boom: {what}")

    @faas.function(name="e2e_wide", memory=128, timeout=10)
    def wide(n):
        print("wide line " + " ".join(f"word{i}" for i in range(80)))
        values = [0] * n
        return sum(values) / len(values)

    yield {"square": square, "slow": slow, "add": add, "boom": boom, "wide": wide}
    discovery.reset()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    import os
    os.environ.update(browser_env())
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(stack, browser, functions):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    seen_bodies: list[bytes] = []

    def record(response):
        if "/jupyter-faas/" in response.url:
            try:
                seen_bodies.append(response.body())
            except Exception:  # noqa: BLE001 - redirects and aborted requests have no body
                pass
    pg.on("response", record)
    pg.seen_bodies = seen_bodies
    stack["timings"]["panel_open_s"] = _open_panel(pg, stack["lab"])
    yield pg
    ctx.close()


def _open_panel(page, lab, widen: bool = True, workspace: str | None = None) -> float:
    """Load JupyterLab, open the Lambda tab; seconds from the click to rows on screen.

    ``workspace``: a fresh one, so the layout is JupyterLab's default (the default workspace
    remembers the panel open and its width from the pages before).
    """
    page.goto(f"{lab.url}/lab" + (f"/workspaces/{workspace}" if workspace else "") + f"?token={lab.token}")
    tab = page.locator('.jp-SideBar [data-id="jupyter-faas-panel"]')
    tab.wait_for(timeout=60_000)
    t0 = time.perf_counter()
    tab.click()
    page.locator(f"{PANEL} .jp-FaaS-row").first.wait_for(timeout=30_000)
    page.locator(f'{PANEL} .jp-FaaS-function[data-function="{BULK_FUNCTION}"]').wait_for(timeout=30_000)
    opened = time.perf_counter() - t0
    if not widen:
        return opened
    # Widen the sidebar the way a user would, by dragging its edge.
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(520, box["y"] + 200, steps=5)
    page.mouse.up()
    return opened


def _stat(page, function, key) -> str:
    return page.locator(f'{PANEL} .jp-FaaS-function[data-function="{function}"] '
                        f'[data-stat="{key}"] .jp-FaaS-statValue').inner_text()


def test_scale_100k_invocations(stack, page, functions):
    """The store holds 100,000 invocations: the panel shows one page, pages older and filters."""
    timings = stack["timings"]
    assert _stat(page, BULK_FUNCTION, "invocations") == f"{BULK:,}"
    assert page.locator(f"{PANEL} .jp-FaaS-row").count() == 50  # one page, not 100,000 rows
    # Paging older through the panel (keyset cursor through the proxy).
    t0 = time.perf_counter()
    page.locator(f"{PANEL} .jp-FaaS-more").click()
    page.wait_for_function(f"document.querySelectorAll('{PANEL} .jp-FaaS-row').length === 100")
    timings["panel_older_page_s"] = time.perf_counter() - t0
    # Filter by status on the server side.
    t0 = time.perf_counter()
    page.select_option(f"{PANEL} .jp-FaaS-filterStatus", "failed")
    page.wait_for_function(
        f"[...document.querySelectorAll('{PANEL} .jp-FaaS-row .jp-FaaS-status')]"
        ".every(e => e.textContent === 'failed') && "
        f"document.querySelectorAll('{PANEL} .jp-FaaS-row').length === 50")
    timings["panel_filter_s"] = time.perf_counter() - t0
    page.select_option(f"{PANEL} .jp-FaaS-filterStatus", "")
    # The REST endpoints the panel calls, through Jupyter, timed from here.
    lab = stack["lab"]
    for name, path in (("api_function_stats_ms", "metrics/functions"),
                       ("api_first_page_ms", "invocations?limit=50"),
                       ("api_metrics_1day_ms", f"metrics/functions/{BULK_FUNCTION}?minutes=1440")):
        t0 = time.perf_counter()
        _lab_get(lab, path)
        timings[name] = (time.perf_counter() - t0) * 1000
    ARTIFACTS.mkdir(exist_ok=True)
    report = "\n".join(f"{k}: {v:.3f}" for k, v in timings.items())
    (ARTIFACTS / "scale.txt").write_text(report + "\n")
    print("\n100,000 invocations:\n" + report)


def _lab_get(lab, path, token=True):
    url = f"{lab.url}/jupyter-faas/api/{path}"
    headers = {"Authorization": f"token {lab.token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
        return json.loads(resp.read())


def test_panel_lists_functions_and_updates_live(stack, page, functions):
    square = functions["square"]
    assert [square(i) for i in range(3)] == [0, 1, 4]
    card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="e2e_square"]')
    card.wait_for(timeout=30_000)
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-function[data-function=\"e2e_square\"] "
        f"[data-stat=\"invocations\"] .jp-FaaS-statValue')?.textContent === '3'", timeout=30_000)
    assert "256 MB · 10 s" in card.inner_text()
    # A marker on window: if the page reloaded, it would be gone.
    page.evaluate("window.__faasMarker = 42")
    inv = square.invoke(12)
    row = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{inv.request_id}"]')
    row.wait_for(timeout=30_000)
    assert page.evaluate("window.__faasMarker") == 42
    assert page.locator(f"{PANEL} .jp-FaaS-row").first.get_attribute("data-request-id") == inv.request_id
    assert inv.request_id[-6:] in row.inner_text() and "succeeded" in row.inner_text()
    assert page.locator(f"{PANEL} .jp-FaaS-live.jp-mod-live").count() == 1

    # Click: the invocation's detail with every log line and the REPORT.
    row.click()
    logs = page.locator(f"{PANEL} .jp-FaaS-logs")
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-logs')?.textContent.includes('squaring 12')")
    text = logs.inner_text()
    assert f"START RequestId: {inv.request_id}" in text and "REPORT RequestId:" in text
    assert "Max Memory Used:" in page.locator(f"{PANEL} .jp-FaaS-report").inner_text()
    assert inv.request_id in page.locator(f'{PANEL} [data-field="request_id"]').inner_text()
    assert "pickled arguments" in page.locator(f'{PANEL} [data-field="input"]').inner_text()


def test_failed_invocation_shows_error_traceback_and_filters(stack, page, functions):
    inv = functions["boom"].invoke("kaput")
    assert inv.status == "failed"
    page.select_option(f"{PANEL} .jp-FaaS-filterFunction", "e2e_boom")
    try:
        page.wait_for_function(
            f"[...document.querySelectorAll('{PANEL} .jp-FaaS-row')].map(r => r.dataset.requestId)"
            f".join() === '{inv.request_id}'", timeout=30_000)
        page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{inv.request_id}"]').click()
        # The stderr line arrives with the stored logs, after the row's own fields.
        page.locator(f"{PANEL} .jp-FaaS-log-stderr", has_text="about to fail").wait_for(timeout=30_000)
        error = page.locator(f"{PANEL} .jp-FaaS-error")
        assert "ValueError: boom: kaput" in error.locator(".jp-FaaS-errorType").inner_text()
        assert 'raise ValueError(f"boom: {what}")' in error.locator(".jp-FaaS-traceback").inner_text()
    finally:
        page.select_option(f"{PANEL} .jp-FaaS-filterFunction", "")
    page.locator(f"{PANEL} .jp-FaaS-row").nth(1).wait_for(timeout=30_000)


def test_live_logs_of_a_running_invocation_and_cancel(stack, page, functions):
    fut = functions["slow"].spawn(60)  # 18 s of ticks unless cancelled
    wait_for(lambda: fut.request_id, what="the invocation's request id")
    row = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{fut.request_id}"]')
    row.wait_for(timeout=30_000)
    row.click()
    # Lines arrive while it is still running, without a reload.
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-logs')?.textContent.includes('tick 5')", timeout=30_000)
    assert page.locator(f'{PANEL} [data-field="status"]').inner_text().endswith("running")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(f"{PANEL} .jp-FaaS-detail").screenshot(path=str(ARTIFACTS / "detail-live.png"))
    page.locator(f"{PANEL} .jp-FaaS-detailHead button", has_text="Cancel").click()
    page.wait_for_function(
        f"document.querySelector('{PANEL} [data-field=\"status\"] dd')?.textContent === 'cancelled'",
        timeout=30_000)
    with pytest.raises(Exception) as info:
        fut.result(30)
    assert type(info.value).__name__ == "Cancelled"
    # Every line, stored before the click or pushed after it, once and in order.
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-logs')?.textContent.includes('END RequestId')")
    lines = page.locator(f"{PANEL} .jp-FaaS-log").all_inner_texts()
    ticks = [line for line in lines if line.startswith("tick ")]
    assert 5 < len(ticks) < 60
    assert ticks == [f"tick {i}" for i in range(len(ticks))]
    stored = _lab_get(stack["lab"], f"invocations/{fut.request_id}/logs")["logs"]
    assert lines == [entry["line"] for entry in stored]


def test_invoke_with_a_json_test_event_and_metrics(stack, page, functions):
    assert functions["add"]({"a": 1, "b": 1}) == 2  # deploys it
    card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="e2e_add"]')
    card.wait_for(timeout=30_000)
    card.locator("button", has_text="Invoke").click()
    box = card.locator("textarea.jp-FaaS-event")
    box.fill('{"a": 2, "b": ')
    card.locator("button", has_text="Run").click()
    assert "not valid JSON" in card.locator(".jp-FaaS-invokeResult").inner_text()
    box.fill('{"a": 2, "b": 40}')
    card.locator("button", has_text="Run").click()
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-function[data-function=\"e2e_add\"] "
        ".jp-FaaS-invokeResult pre')?.textContent === '42'", timeout=30_000)
    assert "succeeded" in card.locator(".jp-FaaS-invokeResult").inner_text()
    # The JSON input is kept as the invocation's input summary.
    rid = card.locator(".jp-FaaS-invokeResult div").first.inner_text().split(" · ")[1]
    assert _lab_get(stack["lab"], f"invocations/{rid}")["input_summary"] == '{"a":2,"b":40}'

    # Metrics for the bulk function: charts drawn from per-minute series.
    bulk_card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="{BULK_FUNCTION}"]')
    bulk_card.locator("button", has_text="Metrics").click()
    with page.expect_response(lambda r: f"metrics/functions/{BULK_FUNCTION}?minutes=1440" in r.url) as answer:
        page.select_option(f"{PANEL} .jp-FaaS-metricsWindow", "1440")
    assert answer.value.ok
    assert page.locator(f"{PANEL} .jp-FaaS-metricsFunction").input_value() == BULK_FUNCTION
    assert page.locator(f"{PANEL} .jp-FaaS-metricsWindow").input_value() == "1440"
    canvases = page.locator(f"{PANEL} canvas.jp-FaaS-chart")
    assert canvases.count() == 3
    page.wait_for_function(f"""(() => {{
        const c = document.querySelector('{PANEL} canvas.jp-FaaS-chart');
        if (!c || !c.width) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
        return false; }})()""", timeout=30_000)
    metrics = _lab_get(stack["lab"], f"metrics/functions/{BULK_FUNCTION}?minutes=1440")
    assert len(metrics["timestamps"]) == 1440 and sum(metrics["invocations"]) > 40_000
    page.locator(f"{PANEL} .jp-FaaS-metrics").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(PANEL).screenshot(path=str(ARTIFACTS / "panel-metrics.png"))


def test_metrics_open_on_the_window_the_data_needs(stack, page, functions):
    """A function invoked just now is charted over 15 minutes, not as a sliver of an hour;
    one with invocations over two days, over a day."""
    assert functions["square"](3) == 9
    window = f"{PANEL} .jp-FaaS-metricsWindow"
    for name, minutes in (("e2e_square", "15"), (BULK_FUNCTION, "1440")):
        card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="{name}"]')
        card.wait_for(timeout=30_000)
        card.locator("button", has_text="Metrics").click()
        page.wait_for_function(
            f"document.querySelector('{PANEL} .jp-FaaS-metricsFunction')?.value === '{name}' && "
            f"document.querySelector('{window}')?.value === '{minutes}'", timeout=30_000)
    # A window the user picks is kept.
    with page.expect_response(lambda r: f"metrics/functions/{BULK_FUNCTION}?minutes=60" in r.url) as answer:
        page.select_option(window, "60")
    assert answer.value.ok and page.locator(window).input_value() == "60"


def test_delete_function_from_the_panel(stack, page, functions):
    card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="e2e_add"]')
    card.locator("button", has_text="Delete").click()
    page.locator(".jp-Dialog button", has_text="Delete").click()
    card.wait_for(state="detached", timeout=30_000)
    with pytest.raises(urllib.error.HTTPError) as info:
        _lab_get(stack["lab"], "functions/e2e_add")
    assert info.value.code == 404


def test_screenshot_and_the_token_never_reaches_the_browser(stack, page, functions):
    page.locator(f'{PANEL} .jp-FaaS-row').nth(0).click()
    page.locator(f"{PANEL} .jp-FaaS-logs").wait_for()
    page.locator(f"{PANEL} .jp-FaaS-title").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-with-panel.png"))
    page.locator(PANEL).screenshot(path=str(ARTIFACTS / "panel.png"))
    assert (ARTIFACTS / "panel.png").stat().st_size > 10_000
    faas_token = stack["server"].token.encode()
    assert page.seen_bodies, "the browser made no request to /jupyter-faas/"
    assert not any(faas_token in body for body in page.seen_bodies)
    assert faas_token.decode() not in page.content()
    # Without Jupyter's credentials the relay refuses, REST and websocket alike.
    with pytest.raises(urllib.error.HTTPError) as info:
        _lab_get(stack["lab"], "status", token=False)
    assert info.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as info:
        _lab_get(stack["lab"], "shutdown")
    assert info.value.code in (404, 405)
    lab = stack["lab"]
    import asyncio
    import concurrent.futures

    from tornado import httpclient, websocket

    async def ws_without_token():
        with pytest.raises(httpclient.HTTPClientError) as denied:
            await websocket.websocket_connect(f"ws://127.0.0.1:{lab.port}/jupyter-faas/events")
        return denied.value.code
    # Playwright's sync API owns this thread's loop: run the websocket client on another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, ws_without_token()).result(30) == 403


# What doesn't fit in a box: its content's width (a Range over it) beyond the box's own.
_LAYOUT_JS = """(panelSel) => {
    const panel = document.querySelector(panelSel);
    const right = panel.getBoundingClientRect().right;
    const textWidth = el => { const r = document.createRange(); r.selectNodeContents(el);
                              return r.getBoundingClientRect().width; };
    const box = panel.querySelector('.jp-FaaS-tableBox');
    const heads = [...panel.querySelectorAll('.jp-FaaS-table th')].filter(th => th.offsetParent !== null).map(th => ({
        text: th.textContent, width: th.getBoundingClientRect().width, needs: textWidth(th),
        right: th.getBoundingClientRect().right}));
    // A cell may be cut only on purpose: with an ellipsis and its whole text as its title.
    const cells = [...panel.querySelectorAll('.jp-FaaS-row td')]
        .filter(td => td.offsetParent !== null && td.scrollWidth > td.clientWidth + 1)
        .filter(td => !(getComputedStyle(td).textOverflow === 'ellipsis' && td.title === td.textContent))
        .map(td => td.textContent);
    const ids = [...panel.querySelectorAll('.jp-FaaS-row .jp-FaaS-rid')].map(td => td.textContent);
    return {right, heads, cells, ids, boxScrolls: box.scrollWidth > box.clientWidth + 1,
            panelScrolls: panel.scrollWidth > panel.clientWidth + 1};
}"""


def test_panel_fits_its_default_sidebar_width(stack, browser, functions):
    """At the sidebar's default width: every column readable, Start on screen, ids that differ,
    a traceback and a long log line unwrapped and scrollable inside the panel."""
    square, wide = functions["square"], functions["wide"]
    ids = [square.invoke(i).request_id for i in range(4)]
    failed = wide.invoke(0)
    assert failed.status == "failed"
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        _open_panel(page, stack["lab"], widen=False, workspace=f"default-width-{uuid.uuid4().hex[:8]}")
        page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{failed.request_id}"]').wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(f"{PANEL} .jp-FaaS-invocations").scroll_into_view_if_needed()
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "panel-default-width.png"))
        layout = page.evaluate(_LAYOUT_JS, PANEL)
        assert [h["text"] for h in layout["heads"]][-1] == "Start"
        squashed = [h["text"] for h in layout["heads"] if h["width"] + 0.5 < h["needs"]]
        assert not squashed, f"columns narrower than their header: {squashed} ({layout['heads']})"
        assert layout["heads"][-1]["right"] <= layout["right"], "the Start column is cut off"
        assert not layout["boxScrolls"] and not layout["panelScrolls"]
        assert not layout["cells"], f"cells cut: {layout['cells']}"
        assert len(set(layout["ids"])) == len(layout["ids"]), f"rows read the same: {layout['ids']}"
        for rid in ids:
            assert page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{rid}"] .jp-FaaS-rid').inner_text() in rid

        page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{failed.request_id}"]').click()
        page.locator(f"{PANEL} .jp-FaaS-log", has_text="wide line").wait_for(timeout=30_000)
        page.locator(f"{PANEL} .jp-FaaS-traceback").wait_for(timeout=30_000)
        page.locator(f"{PANEL} .jp-FaaS-detail").screenshot(path=str(ARTIFACTS / "detail-default-width.png"))
        detail = page.evaluate("""(panelSel) => {
            const panel = document.querySelector(panelSel);
            const right = panel.getBoundingClientRect().right;
            const facts = sel => { const el = panel.querySelector(sel); const s = getComputedStyle(el);
                return {whiteSpace: s.whiteSpace, overflowX: s.overflowX,
                        right: el.getBoundingClientRect().right,
                        scrolls: el.scrollWidth > el.clientWidth}; };
            const line = [...panel.querySelectorAll('.jp-FaaS-log')].find(l => l.textContent.startsWith('wide line'));
            const pre = panel.querySelector('.jp-FaaS-logs');
            return {right, traceback: facts('.jp-FaaS-traceback'), logs: facts('.jp-FaaS-logs'),
                    lineHeight: line.getBoundingClientRect().height,
                    oneLine: parseFloat(getComputedStyle(pre).lineHeight) || 20,
                    panelScrolls: panel.scrollWidth > panel.clientWidth + 1};
        }""", PANEL)
        for part in ("traceback", "logs"):
            facts = detail[part]
            assert facts["whiteSpace"] == "pre" and facts["overflowX"] == "auto", (part, facts)
            assert facts["right"] <= detail["right"], f"the {part} is cut off at the panel's edge"
        assert detail["logs"]["scrolls"]  # the long line scrolls instead of wrapping
        assert detail["lineHeight"] < 2 * detail["oneLine"], "the long log line wrapped"
        assert not detail["panelScrolls"]
    finally:
        ctx.close()


@pytest.mark.parametrize("reported, advice", [
    ({"extension": "0.0.1", "server": "0.0.1"}, "Restart JupyterLab"),
    ({"extension": None, "server": "0.0.2"}, "jupyter faas stop"),
])
def test_panel_says_so_when_the_python_side_is_another_version(stack, browser, functions, reported, advice):
    """After an upgrade the browser can load a panel newer than the code JupyterLab's server
    (or the background FaaS server) runs: the panel names both versions and what to do."""
    import jupyter_faas
    reported = {k: v or jupyter_faas.__version__ for k, v in reported.items()}
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        # JupyterLab adds a cache-busting query to every request.
        page.route("**/jupyter-faas/api/version?*", lambda route: route.fulfill(json=reported))
        page.goto(f"{stack['lab'].url}/lab/workspaces/version-{uuid.uuid4().hex[:8]}?token={stack['lab'].token}")
        tab = page.locator('.jp-SideBar [data-id="jupyter-faas-panel"]')
        tab.wait_for(timeout=60_000)
        tab.click()
        banner = page.locator(f"{PANEL} .jp-FaaS-versionProblem")
        banner.wait_for(timeout=30_000)
        text = banner.inner_text()
        other = "0.0.1" if reported["extension"] == "0.0.1" else "0.0.2"
        assert jupyter_faas.__version__ in text and other in text and advice in text, text
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / f"panel-version-{other}.png"))
    finally:
        ctx.close()


def test_no_version_note_when_the_versions_agree(stack, page, functions):
    page.locator(f"{PANEL} .jp-FaaS-row").first.wait_for(timeout=30_000)
    assert page.locator(f"{PANEL} .jp-FaaS-versionProblem").count() == 0


def test_triggers_dead_letters_and_the_trigger_column(stack, page, functions, tmp_path):
    """Each trigger with its state and Enable/Disable; the dead-letter list with Redrive; each
    invocation's trigger and attempt in the table (a wide panel) and its detail."""
    import jupyter_faas as faas

    def boom_event(event):
        raise ValueError("no")

    bad = faas.function(boom_event, name="e2e_events", retries=1, retry_delay=0.05)
    schedule = bad.schedule("rate(1 hour)")            # never fires during the test
    q = faas.queue("e2e_jobs")
    bad.subscribe(q, batch_size=5)
    inv = bad.invoke_async({"n": 1})
    inv.wait(60)
    wait_for(lambda: faas.dead_letters(function="e2e_events"), what="the dead letter")
    row = page.locator(f'{PANEL} .jp-FaaS-trigger[data-trigger="{schedule.id}"]')
    row.wait_for(timeout=30_000)
    assert "rate(1 hour)" in row.inner_text() and "next " in row.inner_text()
    queue_row = page.locator(f'{PANEL} .jp-FaaS-trigger[data-kind="queue"]')
    assert "e2e_jobs" in queue_row.inner_text() and "depth 0" in queue_row.inner_text()
    # the invocation's trigger and attempts: in the table's column and in the detail
    inv_row = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{inv.request_id}"]')
    inv_row.wait_for(timeout=30_000)
    page.wait_for_function(
        f"document.querySelector('{PANEL} .jp-FaaS-row[data-request-id=\"{inv.request_id}\"] "
        f".jp-FaaS-col-trigger')?.textContent === 'async #2'", timeout=30_000)
    inv_row.click()
    page.wait_for_function(
        f"document.querySelector('{PANEL} [data-field=\"trigger\"]')?.textContent.includes('2 attempts')",
        timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(f"{PANEL} .jp-FaaS-triggers").screenshot(path=str(ARTIFACTS / "panel-triggers.png"))
    # Disable from the panel: the server's row says so
    row.locator("button", has_text="Disable").click()
    wait_for(lambda: not schedule.refresh().enabled, what="the schedule disabled")
    row.locator("button", has_text="Enable").wait_for(timeout=30_000)
    # Redrive from the panel: the dead letter leaves the list and runs again
    dead = page.locator(f"{PANEL} .jp-FaaS-deadLetter")
    dead.first.wait_for(timeout=30_000)
    dead.first.locator("button", has_text="Redrive").click()
    wait_for(lambda: not faas.dead_letters(function="e2e_events"), what="the redrive")
    wait_for(lambda: any(i._row.get("triggered_by") == "redrive"
                         for i in faas.invocations(function="e2e_events")), what="the redriven run")
    for t in faas.triggers(function="e2e_events"):
        t.delete()


def test_versions_aliases_weights_and_the_split_by_version(stack, browser, functions):
    """Two published versions, a weighted alias, calls through the alias: at the default sidebar
    width the panel shows the versions, the alias and its weights, and the calls by version."""
    import jupyter_faas as faas
    one = faas.function(name="e2e_versions")(lambda x: ("one", x))
    assert one.publish() == 1
    two = faas.function(name="e2e_versions")(lambda x: ("two", x))
    assert two.publish() == 2
    two.alias("live", version=1, weights={2: 0.3})
    live = faas.lookup("e2e_versions:live")
    ran = [tag for tag, _ in live.map(range(40))]
    assert set(ran) <= {"one", "two"} and len(ran) == 40
    assert two(0) == ("two", 0)  # and one call of $LATEST (engine version 2, as published 2 is)
    expected = {"1": ran.count("one"), "2": ran.count("two"), "$LATEST": 1}
    expected = {v: n for v, n in expected.items() if n}
    # the server's figures, through the panel's own proxy
    def served() -> dict:
        reply = _lab_get(stack["lab"], "metrics/versions")
        function = next(f for f in reply["functions"] if f["name"] == "e2e_versions")
        assert [v["version"] for v in function["versions"]] == ["$LATEST", "1", "2"]
        assert function["aliases"][0]["weights"] == {"2": 0.3}
        return {r["version"]: r["invocations"] for r in function["invocations_by_version"]}
    wait_for(lambda: served() == expected, what=f"the rows by version {expected}")

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        _open_panel(page, stack["lab"], widen=False, workspace=f"versions-{uuid.uuid4().hex[:8]}")
        card = page.locator(f'{PANEL} .jp-FaaS-versionCard[data-function="e2e_versions"]')
        card.wait_for(timeout=30_000)
        tags = card.locator(".jp-FaaS-versionTag")
        wait_for(lambda: tags.all_inner_texts() == ["$LATEST", "v1", "v2"], what="the versions")
        alias = card.locator('.jp-FaaS-alias[data-alias="live"]')
        assert alias.inner_text() == "live → v1 70% · v2 30%"
        legend = card.locator(".jp-FaaS-splitItem")

        def shown() -> dict:
            return {item.get_attribute("data-version"): item.inner_text() for item in legend.all()}
        total = sum(expected.values())
        want = {v: f"{'$LATEST' if v == '$LATEST' else 'v' + v} {n} ({round(100 * n / total)}%)"
                for v, n in expected.items()}
        wait_for(lambda: shown() == want, what=f"the split {want}")
        # the bar's segments follow the shares
        widths = card.locator(".jp-FaaS-splitSeg").evaluate_all("els => els.map(e => e.style.width)")
        assert len(widths) == len(expected)
        # the card is redrawn when its figures change (a late refresh of the split): a redraw
        # in the middle of a scroll or a screenshot detaches it, so do it again until one lands
        wait_for(lambda: _attached(card.scroll_into_view_if_needed), what="the versions card in view")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "panel-versions-default-width.png"))
        wait_for(lambda: _screenshot(card, ARTIFACTS / "versions-card-default-width.png"),
                 what="a screenshot of the versions card")
        fits = page.evaluate("""(sel) => { const v = document.querySelector(sel + ' .jp-FaaS-versions');
            const panel = document.querySelector(sel);
            return {view: v.scrollWidth <= v.clientWidth + 1, panel: panel.scrollWidth <= panel.clientWidth + 1,
                    right: v.getBoundingClientRect().right <= panel.getBoundingClientRect().right + 0.5}; }""", PANEL)
        assert fits == {"view": True, "panel": True, "right": True}
    finally:
        ctx.close()


def test_many_functions_do_not_push_the_invocations_out_of_sight(stack, browser, functions):
    """At the default width, a dozen function cards scroll in a box of their own: the live
    invocations list still starts on the first screen of the panel."""
    import jupyter_faas as faas
    for i in range(12):
        faas.function(name=f"e2e_many_{i}", show=False)(lambda x: x)(i)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        _open_panel(page, stack["lab"], widen=False, workspace=f"many-{uuid.uuid4().hex[:8]}")
        page.locator(f"{PANEL} .jp-FaaS-function").nth(12).wait_for(state="attached", timeout=30_000)
        boxes = page.evaluate("""(sel) => {
            const list = document.querySelector(sel + ' .jp-FaaS-cardList');
            const inv = document.querySelector(sel + ' .jp-FaaS-invocations');
            return {scrolls: list.scrollHeight > list.clientHeight + 1,
                    invocationsTop: inv.getBoundingClientRect().top, screen: window.innerHeight};
        }""", PANEL)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "panel-many-functions.png"))
        assert boxes["scrolls"], boxes
        assert boxes["invocationsTop"] < boxes["screen"], boxes
    finally:
        ctx.close()


def test_provisioned_in_use_and_the_snapshot_state_on_the_function_cards(stack, page, functions, tmp_path):
    """A function with INIT and provisioned concurrency shows its environments kept and in use,
    and its snapshot template ready; one whose INIT leaves a thread running shows that its
    version fell back to ordinary cold starts, and why; a provisioned call's Init is warm."""
    import jupyter_faas as faas

    def load():
        global TABLE
        TABLE = {"loaded": True}

    def handler(path):
        import os
        import time
        while path and not os.path.exists(path):
            time.sleep(0.005)
        return os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]

    def starts_a_thread():
        import threading
        import time
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

    warm = faas.function(name="e2e_warm", init=load, show=False)(handler)
    assert warm.provision(2)["status"] == "READY"
    unsafe = faas.function(name="e2e_unsafe", init=starts_a_thread, show=False)(handler)
    assert unsafe("") == "on-demand"

    card = page.locator(f'{PANEL} .jp-FaaS-function[data-function="e2e_warm"]')
    card.wait_for(timeout=30_000)
    provisioned = card.locator('.jp-FaaS-provisioned[data-qualifier="$LATEST"]')
    wait_for(lambda: provisioned.count() and provisioned.inner_text() == "Provisioned 2 · 0 in use",
             what="the provisioned line")
    snapshot = card.locator(".jp-FaaS-snapshot")
    wait_for(lambda: snapshot.count() and snapshot.get_attribute("data-state") == "ready",
             what="the template ready")
    assert snapshot.inner_text() == "Snapshot: template ready (cold starts fork after INIT)"

    go = tmp_path / "go"
    fut = warm.spawn(str(go))  # holds a provisioned environment until the file exists
    wait_for(lambda: provisioned.inner_text() == "Provisioned 2 · 1 in use", what="1 in use")
    ARTIFACTS.mkdir(exist_ok=True)
    wait_for(lambda: _screenshot(card, ARTIFACTS / "function-provisioned-in-use.png"),
             what="a screenshot of the provisioned card")
    go.touch()
    assert fut.result() == "provisioned-concurrency"
    wait_for(lambda: provisioned.inner_text() == "Provisioned 2 · 0 in use", what="0 in use again")

    refused = page.locator(f'{PANEL} .jp-FaaS-function[data-function="e2e_unsafe"] .jp-FaaS-snapshot')
    wait_for(lambda: refused.count() and refused.get_attribute("data-state") == "refused",
             what="the snapshot refused")
    text = refused.inner_text()
    assert text.startswith("No snapshot: ") and "thread" in text and text.endswith("; cold starts run INIT")
    assert "jp-mod-error" in refused.get_attribute("class")

    # the provisioned call's detail: its Init field says it was warm, from a provisioned one
    row = page.locator(f'{PANEL} .jp-FaaS-row[data-request-id="{fut.request_id}"]')
    row.wait_for(timeout=30_000)
    row.click()
    init = page.locator(f'{PANEL} [data-field="init"] dd')
    wait_for(lambda: init.inner_text() == "warm · provisioned", what="the Init field")
    assert warm.provision(0) is None
    wait_for(lambda: provisioned.count() == 0, what="the provisioned line gone")


def _attached(action) -> bool:
    """Run a Playwright ``action``; False if its element was redrawn (detached) meanwhile."""
    from playwright.sync_api import Error
    try:
        action(timeout=5_000)
        return True
    except Error as exc:
        if "not attached" in str(exc):
            return False
        raise


def _screenshot(locator, path) -> bool:
    """Screenshot ``locator``; False if it was redrawn (detached) meanwhile."""
    return _attached(lambda timeout: locator.screenshot(path=str(path), timeout=timeout))
