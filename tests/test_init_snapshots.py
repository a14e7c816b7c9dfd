"""INIT (``init=``), INIT errors, and snapshots after INIT, against a real server.

Where INIT ran is proved by side effects (files named by the process that wrote them),
sharing by the kernel's own accounting (``/proc/PID/smaps_rollup``: Pss against Rss).
"""

from __future__ import annotations

import os

import pytest

import jupyter_faas as faas

MB = 1024 * 1024
#: what INIT assigns with ``global`` (module globals: a test function's locals would be closures)
state = None
table = None


def _marks(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_init_runs_once_per_environment_in_the_environment(conn, tmp_path):
    marks = str(tmp_path)

    def load():
        global state
        open(os.path.join(marks, f"init-{os.getpid()}"), "w").close()
        print("INIT loading")
        state = {"pid": os.getpid(), "calls": 0}

    @faas.function(name="init_once", init=load, timeout=10)
    def handler(x):
        state["calls"] += 1
        return state["calls"], state["pid"], os.getpid()

    first = handler.invoke(1)
    assert first.status == "succeeded", first.error
    calls, init_pid, env_pid = first.result
    # INIT ran in an execution environment (never in this process), before the handler
    assert init_pid != os.getpid() and f"init-{os.getpid()}" not in _marks(marks)
    assert _marks(marks) == [f"init-{init_pid}"]
    assert first.report.init_duration_ms is not None
    logs = first.logs
    assert logs[0].startswith("INIT_START") and "INIT loading" in logs
    assert logs.index("INIT loading") < next(i for i, l in enumerate(logs) if l.startswith("START"))
    # warm calls reuse INIT's state: the counter goes on, INIT does not run again
    second = handler.invoke(2)
    assert second.result[0] == calls + 1 and second.result[2] == env_pid
    assert second.report.init_duration_ms is None
    assert "INIT loading" not in second.logs
    assert _marks(marks) == [f"init-{init_pid}"]
    # the handler's globals are INIT's: a global it assigned is what the handler reads
    assert state is None


def test_local_runs_init_in_the_kernel_once(conn):
    loaded = []

    def load():
        loaded.append(os.getpid())

    @faas.function(name="init_local", init=load)
    def handler(x):
        return len(loaded)

    assert handler.local(0) == 1 and handler.local(0) == 1
    assert loaded == [os.getpid()]


def test_init_error_is_lambdas_init_error_with_traceback(conn):
    def load():
        import not_a_module_anywhere  # noqa: F401

    @faas.function(name="init_import_error", init=load)
    def handler(x):
        return x

    with pytest.raises(ModuleNotFoundError) as info:
        handler(1)
    exc = info.value
    assert isinstance(exc, faas.FunctionError)
    assert exc.details["remote_type"] == "Runtime.ImportModuleError"
    assert exc.details["error"]["stage"] == "init_code"
    assert "Unable to import module" in exc.details["error"]["errorMessage"]
    trace = exc.details["remote_traceback"]
    assert "in load" in trace and "import not_a_module_anywhere" in trace
    assert "kernel_workers" not in trace  # the user's frames, not the runtime's
    assert any("INIT failed" in note for note in exc.__notes__)

    def broken():
        raise ValueError("no model file")

    @faas.function(name="init_value_error", init=broken)
    def handler2(x):
        return x

    inv = handler2.invoke(1)
    assert inv.status == "failed"
    assert isinstance(inv.error, ValueError) and isinstance(inv.error, faas.FunctionError)
    assert inv.error.details["error"]["stage"] == "init_code"
    assert any("[ERROR] ValueError: no model file" in line for line in inv.logs), inv.logs


SHARED = 160  # MB that INIT allocates and touches


def _rollup() -> dict:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0].rstrip(":")] = int(parts[1]) // 1024
    return out


def test_forked_environments_share_inits_pages_and_run_restore_hooks(conn, tmp_path):
    marks = str(tmp_path)
    restored = []

    def load():
        global table
        table = bytes(range(256)) * (SHARED * MB // 256)  # touched: resident in the template
        open(os.path.join(marks, f"init-{os.getpid()}"), "w").close()

        def hook():
            restored.append(os.getpid())
        faas.on_restore(hook)

    @faas.function(name="snap_share", init=load, memory=1024, timeout=30)
    def handler(x):
        # two invocations at once: each waits until the other has started
        open(os.path.join(marks, f"run-{x}"), "w").close()
        wait = 0
        while len([m for m in os.listdir(marks) if m.startswith("run-")]) < 2 and wait < 10**7:
            wait += 1
        return {"pid": os.getpid(), "restored": list(restored), "len": len(table),
                "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"], **_rollup()}

    out = handler.map([1, 2], concurrency=2)
    inits = [m for m in _marks(marks) if m.startswith("init-")]
    assert len(inits) == 1, inits  # INIT ran once, in the template
    template_pid = int(inits[0].split("-")[1])
    pids = {o["pid"] for o in out}
    assert len(pids) == 2 and template_pid not in pids
    for o in out:
        assert o["len"] == SHARED * MB
        assert o["restored"] == [o["pid"]]          # its restore hook ran, in it
        assert o["init_type"] == "snap-start"
        assert o["Rss"] >= SHARED                    # the table is mapped ...
        assert o["Pss"] < o["Rss"] - SHARED / 2      # ... and shared (template + siblings)
    assert conn.request("GET", "/faas/api/status")["templates"] >= 1


def test_fork_unsafe_init_falls_back_and_says_why(conn, tmp_path):
    marks = str(tmp_path)

    def load():
        import threading
        import time
        threading.Thread(target=time.sleep, args=(3600,), daemon=True, name="poller").start()
        open(os.path.join(marks, f"init-{os.getpid()}"), "w").close()

    @faas.function(name="snap_unsafe", init=load, timeout=10)
    def handler(x):
        return os.getpid(), os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]

    first = handler.invoke(0)
    assert first.status == "succeeded", first.error
    assert any("SNAPSHOT skipped" in l and "poller" in l and "thread" in l for l in first.logs), \
        first.logs
    results = handler.map(range(4), concurrency=4)
    # every environment ran INIT itself: one mark per environment, none forked from a template
    env_pids = {pid for pid, _ in results} | {first.result[0]}
    assert {f"init-{p}" for p in env_pids} <= set(_marks(marks))
    assert {kind for _, kind in results} == {"on-demand"}
    refused = conn.request("GET", "/faas/api/status")["snapshots_refused"]
    assert "poller" in refused[f"snap_unsafe:{handler.version}"]


def test_snapshot_false_opts_out(conn, tmp_path):
    marks = str(tmp_path)

    def load():
        open(os.path.join(marks, f"init-{os.getpid()}"), "w").close()

    @faas.function(name="snap_off", init=load, snapshot=False, timeout=10)
    def handler(x):
        return os.getpid(), os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]

    pid, kind = handler(0)
    assert kind == "on-demand" and _marks(marks) == [f"init-{pid}"]
    assert not any("SNAPSHOT" in l for l in handler.invoke(1).logs)


def test_learned_preload_makes_a_second_numpy_functions_cold_start_skip_the_import(make_server):
    from jupyter_faas.client import discovery
    from conftest import wait_for
    server = make_server()
    conn = faas.connect(server.url, server.token)
    try:
        status = conn.request("GET", "/faas/api/status")
        assert "numpy" not in status["preloaded_learned"]

        @faas.function(name="uses_numpy_first")
        def first(x):
            import numpy
            return float(numpy.float64(x))

        assert first(2) == 2.0
        # the server learned the import; the zygote imports numpy in the background
        wait_for(lambda: "numpy" in conn.request("GET", "/faas/api/status")["preloaded_learned"],
                 what="the zygote to preload numpy")

        @faas.function(name="uses_numpy_second")
        def second(x):
            import sys
            already = "numpy" in sys.modules  # before this function imports anything
            import numpy
            return already, float(numpy.float64(x))

        inv = second.invoke(3)
        assert inv.result == (True, 3.0)
        assert inv.report.init_duration_ms is not None  # a cold start, from the zygote or a spare
    finally:
        discovery.reset()
        server.stop()
    # persisted in the store: the server restarted on the same store preloads it at start
    server.start()
    conn = faas.connect(server.url, server.token)
    try:
        wait_for(lambda: "numpy" in conn.request("GET", "/faas/api/status")["preloaded_learned"],
                 what="the restarted zygote to preload numpy")
    finally:
        discovery.reset()


def test_a_forked_environments_max_memory_used_is_what_its_limit_counts(conn):
    """INIT's pages are the template's: a fork's Max Memory Used counts what it allocated
    itself, as its limit does, so a success never reports more than its Memory Size."""
    def load():
        global table
        table = bytes(range(256)) * (200 * MB // 256)  # 200 MB, touched in the template

    @faas.function(name="snap_memory", init=load, memory=256, timeout=30)
    def handler(mb):
        block = bytearray(mb * MB)  # zeroed: touched, charged to this environment
        return len(table) + len(block), os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]

    handler.invoke(0)  # the first cold start makes the template (and may run in a fork)
    small = handler.invoke(0)
    big = handler.invoke(100)
    for inv in (small, big):
        assert inv.status == "succeeded", inv.error
        assert inv.result[1] == "snap-start"
        assert inv.report.max_memory_used_mb <= 256, inv.report
    assert big.report.max_memory_used_mb >= 100, big.report      # what it allocated itself ...
    assert small.report.max_memory_used_mb < 100, small.report   # ... not INIT's 200 MB


ZIP_HANDLER = ("import numpy\n"
               "from app import greeter\n"
               "def handler(event, context):\n"
               "    return greeter.hi() + str(numpy.int64(1))\n")


def test_learned_preload_skips_modules_only_a_zip_package_can_import(make_server):
    """``app`` is importable only with the package's directory on the path: the zygote
    could not preload it, so it is not learned; numpy, which the zygote can import, is."""
    import sqlite3

    from conftest import wait_for
    from jupyter_faas.client import discovery
    from lambda_fixtures import client, create
    server = make_server()
    conn = faas.connect(server.url, server.token)
    store = server.base / "data" / "faas" / "faas.sqlite"

    def learned():
        with sqlite3.connect(store) as db:
            return {r[0] for r in db.execute("SELECT name FROM learned_modules")}
    try:
        lam = client(server)
        create(lam, "zip_imports", {"app/__init__.py": "", "app/greeter.py": "def hi():\n    return 'hi'\n",
                                    "app/handler.py": ZIP_HANDLER}, handler="app.handler.handler")
        assert faas.lookup("zip_imports")({}) == "hi1"
        wait_for(lambda: "numpy" in conn.request("GET", "/faas/api/status")["preloaded_learned"],
                 what="the zygote to preload numpy")
        assert "numpy" in learned() and "app" not in learned()
    finally:
        discovery.reset()
        server.stop()
    # one learned before environments filtered (a store of an older server): tried once at the
    # next start, then forgotten, quietly
    with sqlite3.connect(store) as db:
        db.execute("INSERT INTO learned_modules(name, last_seen, seen) VALUES ('app', 1e10, 1)")
    server.start()
    try:
        wait_for(lambda: "app" not in learned(), what="the server to forget 'app'")
        log = "".join(p.read_text() for p in server.base.glob("server-*.log"))
        assert "did not preload app" not in log
    finally:
        server.stop()
