"""The Dask backend against real clusters: a LocalCluster of worker processes started by the
server (``--FaaSServer.dask_scheduler=local:1``), and ``dask scheduler`` + ``dask worker``
started as separate processes.  Clusters are small (one thread per worker, one or two
workers): the machine has two cores.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import jupyter_faas as faas
from conftest import SEEN, ServerProcess, wait_for
from dask_clusters import ExternalCluster, NetNamespace
from failures import fail
from jupyter_faas.client import discovery

import distributed  # noqa: E402,F401 - the test extra has it (dask[distributed])


@pytest.fixture(scope="module")
def dask_server(tmp_path_factory):
    """A server whose default backend is a LocalCluster of one single-threaded worker process."""
    s = ServerProcess(tmp_path_factory.mktemp("faas-dask"), "--FaaSServer.backend=dask",
                      "--FaaSServer.dask_scheduler=local:1", "--FaaSServer.throttle_wait=30").start()
    yield s
    s.stop()


@pytest.fixture
def dconn(dask_server):
    c = faas.connect(dask_server.url, dask_server.token)
    yield c
    discovery.reset()


@pytest.fixture
def cluster(tmp_path):
    c = ExternalCluster(tmp_path / "cluster")
    yield c
    SEEN.extend(c.descendants())
    c.stop()


def _where(inv) -> str:
    """The process that ran it, printed by the functions below."""
    return next(line for line in inv.logs if line.startswith("pid "))


@faas.function(name="dask_square", memory=128, timeout=10, backend="dask")
def square(x):
    print("pid", os.getpid(), "ppid", os.getppid())
    return x * x


@faas.function(name="dask_fail", memory=128, timeout=2, backend="dask")
def fails(how):
    print("pid", os.getpid())
    return fail(how)


# ---- on a LocalCluster the server started -------------------------------------------------------

def test_result_logs_report_cold_then_warm(dconn, dask_server):
    first = square.invoke(7)
    assert first.result == 49
    assert first.report.init_duration_ms is not None and first.report.init_duration_ms > 0
    assert first.report.max_memory_used_mb > 0
    assert any(line.startswith("REPORT RequestId") and "Init Duration" in line for line in first.logs)
    second = square.invoke(8)
    assert second.result == 64
    assert second.report.init_duration_ms is None              # warm: the same environment
    assert _where(second).split()[1] == _where(first).split()[1]
    # The environment is not a process of the server: it runs on the Dask worker, forked
    # from a zygote the worker started (the worker is a child of the server's LocalCluster).
    env_pid = int(_where(first).split()[1])
    chain = [p.name() for p in psutil.Process(env_pid).parents()]
    server_children = {p.pid for p in psutil.Process(dask_server.proc.pid).children()}
    assert not server_children & {env_pid, psutil.Process(env_pid).ppid()}
    assert len(chain) >= 3
    # the row names the worker that ran it
    row = dconn.request("GET", f"/faas/api/invocations/{second.request_id}")
    assert "@tcp://127.0.0.1:" in row["environment_id"]


def test_init_runs_on_the_worker_and_its_output_comes_before_start(dconn):
    def setup():
        global PREFIX
        print("loading on", os.getpid(), flush=True)
        PREFIX = "ready:"

    @faas.function(name="dask_with_init", backend="dask", init=setup)
    def greet(x):
        return PREFIX + str(x)  # noqa: F821 - set by setup() at INIT

    inv = greet.invoke(1)
    assert inv.result == "ready:1"
    logs = list(inv.logs)
    loading = next(i for i, line in enumerate(logs) if line.startswith("loading on"))
    assert logs[0].startswith("INIT_START") and loading < next(
        i for i, line in enumerate(logs) if line.startswith("START RequestId"))
    assert inv.report.init_duration_ms is not None
    assert greet.invoke(2).result == "ready:2"          # warm: INIT ran once


def test_a_local_function_still_runs_locally(dconn, dask_server):
    @faas.function(name="dask_router_local", backend="local")
    def here():
        return os.getppid()

    zygote = here()
    # the local backend's zygote is the server's own child
    assert zygote in {p.pid for p in psutil.Process(dask_server.proc.pid).children()}


def test_the_magic_takes_a_backend():
    from jupyter_faas.magics import _parse_cell_args
    opts = _parse_cell_args("resize --backend dask --memory 256")
    assert opts["backend"] == "dask" and opts["memory"] == 256 and opts["name"] == "resize"


def test_backend_option_is_validated():
    with pytest.raises(faas.InvalidParameter, match="backend='ray' is not one of local, dask"):
        faas.function(backend="ray", name="bad")(lambda: 1)


@pytest.mark.parametrize("how, error, text", [
    ("exception", ValueError, "boom"),
    ("timeout", faas.InvocationTimeout, "Task timed out after 2.00 seconds"),
    ("memory", faas.OutOfMemory, "limit of 128 MB"),
    ("segfault", faas.RuntimeExited, "SIGSEGV"),
    ("sys.exit", faas.RuntimeExited, "exit status 3"),
])
def test_failure_matrix_on_dask(dconn, how, error, text):
    fut = fails.spawn(how)
    with pytest.raises(error, match=text) as info:
        fut.result(timeout=60)
    if how == "exception":
        assert isinstance(info.value, faas.FunctionError)
    if how == "memory":
        assert "at its peak" in str(info.value)
        assert fut.report.max_memory_used_mb >= 128
    assert fut.report is not None
    # the worker's environment replaced, the next call works
    assert square(3) == 9


@pytest.mark.parametrize("mode", ["cgroup", "watchdog"])
def test_memory_limit_on_the_workers_by_cgroup_or_watchdog(make_server, mode):
    """--FaaSServer.memory_enforcement applies on the workers too: each environment in a cgroup of
    its own on the worker (or under the RSS watchdog there); the status says which, per worker; an
    environment, or a process it started, over the limit ends as OutOfMemory with its peak."""
    if mode == "cgroup" and not _cgroups_writable():
        pytest.fail("this machine has no writable cgroup v1 memory controller; run the tests as "
                    "root on a cgroup v1 host (as CI does)")
    conn, _ = _serve_on(make_server, "local:1", f"--FaaSServer.memory_enforcement={mode}")
    try:
        @faas.function(name=f"dask_hog_{mode}", memory=128, timeout=30, backend="dask")
        def hog(mb, child=False):
            with open("/proc/self/cgroup") as f:
                print(next(line for line in f.read().splitlines() if ":memory:" in line), flush=True)
            if child:
                import subprocess
                import sys
                subprocess.run([sys.executable, "-c", f"import time; b = b'x' * ({mb} * 2**20); "
                                                      f"time.sleep(10)"], check=False)
                return "child done"
            data = b"x" * (mb * 2**20)
            time.sleep(2)
            return len(data)

        small = hog.invoke(1)
        assert small.result == 2**20
        cgroup = next(line for line in small.logs if ":memory:" in line)
        assert ("/jupyter_faas-dask-" in cgroup) == (mode == "cgroup"), cgroup

        def reported():
            d = conn.request("GET", "/faas/api/status")["backends"]["dask"]
            return d if d["workers"] and d["workers"][0]["memory_enforcement"] else None
        dask = wait_for(reported, what="the worker's heartbeat with its memory enforcement")
        assert dask["workers"][0]["memory_enforcement"] == mode
        assert dask["memory_enforcement"] == f"{mode} (on the Dask workers)"
        for child in (False, True):
            fut = hog.spawn(400, child=child)
            with pytest.raises(faas.OutOfMemory, match="at its peak") as info:
                fut.result(timeout=60)
            assert "limit of 128 MB" in str(info.value)
            assert fut.report.max_memory_used_mb >= 128
        assert hog(1) == 2**20                               # a new environment serves on
    finally:
        discovery.reset()


def test_timeout_kills_the_environments_children_on_the_worker(dconn):
    @faas.function(name="dask_orphan_maker", timeout=1, backend="dask")
    def orphan_maker():
        import subprocess
        child = subprocess.Popen(["sleep", "300"])
        print("child", child.pid, flush=True)
        time.sleep(60)

    fut = orphan_maker.spawn()
    with pytest.raises(faas.InvocationTimeout):
        fut.result(timeout=60)
    child = int(next(line for line in fut.logs if line.startswith("child")).split()[1])
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the environment's child outlived its timeout"
        time.sleep(0.05)


def test_logs_stream_live_from_the_worker(dconn):
    @faas.function(name="dask_live", timeout=30, backend="dask")
    def live():
        print("first line", flush=True)
        time.sleep(2)
        print("second line")
        return "ok"

    fut = live.spawn()
    deadline = time.monotonic() + 30
    while "first line" not in fut.logs:
        assert time.monotonic() < deadline, f"no live line; status {fut.status}, logs {list(fut.logs)}"
        time.sleep(0.02)
    assert not fut.done() and "second line" not in fut.logs   # streamed while it sleeps
    assert fut.result(timeout=30) == "ok"
    stored = faas.Invocation.from_id(fut.request_id).logs
    assert stored.index("first line") < stored.index("second line") < next(
        i for i, line in enumerate(stored) if line.startswith("END"))


def test_a_flood_is_kept_whole(dconn):
    @faas.function(name="dask_flood", timeout=60, backend="dask")
    def flood(n):
        for i in range(n):
            print(i)
        return n

    n = 30_000   # more than a worker sends live (20,000): the rest comes with the result
    fut = flood.spawn(n)
    assert fut.result(timeout=60) == n
    stored = [line for line in faas.Invocation.from_id(fut.request_id).logs if line.isdigit()]
    assert stored == [str(i) for i in range(n)]


def test_cancel_kills_the_environment_on_the_worker(dconn):
    @faas.function(name="dask_sleeper", timeout=60, backend="dask")
    def sleeper():
        print("pid", os.getpid(), flush=True)
        time.sleep(60)

    fut = sleeper.spawn()
    deadline = time.monotonic() + 30
    while not any(line.startswith("pid ") for line in fut.logs):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int(next(line for line in fut.logs if line.startswith("pid ")).split()[1])
    started = time.monotonic()
    assert fut.cancel()
    with pytest.raises(faas.Cancelled):
        fut.result(timeout=30)
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() - started < 5, "the cancelled environment still runs on the worker"
        time.sleep(0.05)
    assert faas.Invocation.from_id(fut.request_id).status == "cancelled"


def test_map_in_order_and_status_reports_the_cluster(dconn):
    assert square.map(range(50), concurrency=8) == [x * x for x in range(50)]
    status = dconn.request("GET", "/faas/api/status")
    dask = status["backends"]["dask"]
    assert dask["connected"] and dask["worker_threads"] == 1 and dask["scheduler"].startswith("tcp://")
    # the cluster view's data: the worker, its memory, this server's environments on it
    (worker,) = dask["workers"]
    assert worker["address"].startswith("tcp://127.0.0.1:") and worker["in_cluster"] and worker["nthreads"] == 1
    assert worker["memory_mb"] > 0 and worker["memory_limit_mb"] >= worker["memory_mb"]
    envs = {e["id"]: e for e in worker["environments"]}
    assert any(e["function"] == "dask_square" and e["state"] == "idle" for e in envs.values())
    row = dconn.request("GET", "/faas/api/invocations", params={"function": "dask_square", "limit": 1})
    env_id, _, on = row["invocations"][0]["environment_id"].partition("@")
    assert on == worker["address"] and env_id in envs
    # admission counts them against the cluster's memory (80% of its workers'), not this machine's
    assert abs(dask["memory_budget_mb"] - 0.8 * worker["memory_limit_mb"]) <= 1
    assert status["memory_pools"]["dask"] == {"running": 0, "memory_in_use_mb": 0,
                                              "memory_budget_mb": dask["memory_budget_mb"]}
    assert status["default_backend"] == "dask" and status["memory_enforcement"] in ("cgroup", "watchdog")


def test_admission_counts_dask_invocations_against_the_cluster(make_server, tmp_path):
    """This machine's memory budget full does not hold back a Dask invocation; the cluster's
    budget full throttles a Dask call, naming that budget, and not a local one."""
    server = make_server("--FaaSServer.backend=dask", "--FaaSServer.dask_scheduler=local:1",
                         "--FaaSServer.memory_budget_mb=128", "--FaaSServer.dask_memory_budget_mb=128",
                         "--FaaSServer.throttle_wait=1")
    conn = faas.connect(server.url, server.token)
    try:
        def hold(path):
            print("holding", flush=True)
            while not os.path.exists(path):
                time.sleep(0.02)
            return "released"

        local_hold = faas.function(name="adm_local_hold", memory=128, timeout=60, backend="local")(hold)
        dask_hold = faas.function(name="adm_dask_hold", memory=128, timeout=60, backend="dask")(hold)
        on_dask = faas.function(name="adm_dask", memory=128, timeout=30, backend="dask")(lambda x: x + 1)
        on_local = faas.function(name="adm_local", memory=128, timeout=30, backend="local")(lambda x: x - 1)
        release = tmp_path / "release"
        held_here = local_hold.spawn(str(release))
        wait_for(lambda: "holding" in held_here.logs, timeout=60, what="the local invocation to start")
        assert on_dask(1) == 2                      # this machine's 128 MB are in use: runs anyway
        held_there = dask_hold.spawn(str(release))
        wait_for(lambda: "holding" in held_there.logs, timeout=60, what="the Dask invocation to start")
        status = conn.request("GET", "/faas/api/status")
        assert status["memory_in_use_mb"] == 128 and status["memory_budget_mb"] == 128
        assert status["memory_pools"]["dask"] == {"running": 1, "memory_in_use_mb": 128,
                                                  "memory_budget_mb": 128}
        assert status["backends"]["dask"]["memory_budget_mb"] == 128
        with pytest.raises(faas.Throttled, match=r"memory budget of the dask backend \(128 MB"):
            on_dask(2)                               # the cluster's 128 MB are in use
        release.write_text("go")
        assert held_here.result(timeout=60) == held_there.result(timeout=60) == "released"
        assert on_local(1) == 0 and on_dask(3) == 4
    finally:
        discovery.reset()


def test_large_arrays_go_and_come_back(dconn):
    import numpy as np

    @faas.function(name="dask_numpy", memory=512, timeout=30, backend="dask")
    def double(a):
        return a * 2

    a = np.arange(400_000, dtype="float64")          # 3.2 MB: a buffer file on this machine
    assert np.array_equal(double(a), a * 2)


def test_a_function_on_a_backend_the_server_does_not_run(conn):
    @faas.function(name="dask_nowhere", backend="dask")
    def nowhere():
        return 1

    with pytest.raises(faas.ServerError, match="does not run; start it with --FaaSServer.backend=dask"):
        nowhere()


def test_the_worker_module_loads_distributed_only_when_used():
    import subprocess
    import sys
    code = ("import sys, kernel_workers.runtime, kernel_workers.zygote, kernel_workers.wire;"
            "assert 'kernel_workers.dask_worker' not in sys.modules;"
            "import kernel_workers.dask_worker;"
            "print(','.join(m for m in sys.modules if m.split('.')[0] in "
            "('distributed', 'dask', 'psutil', 'jupyter_faas', 'tornado')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---- on `dask scheduler` + `dask worker` processes ---------------------------------------------

def _all_invocations(conn, function: str) -> list:
    rows, params = [], {"function": function, "limit": 1000}
    while True:
        page = conn.request("GET", "/faas/api/invocations", params=params)
        rows += page["invocations"]
        if not page.get("next") or not page["invocations"]:
            return rows
        params = dict(params, **page["next"])


def _serve_on(make_server, address, *options):
    server = make_server("--FaaSServer.backend=dask", f"--FaaSServer.dask_scheduler={address}",
                         "--FaaSServer.throttle_wait=30", *options)
    return faas.connect(server.url, server.token), server


def test_separate_processes_and_a_worker_killed_during_a_map(make_server, cluster):
    address = cluster.start_scheduler()
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    cluster.wait_workers(2)
    conn, _ = _serve_on(make_server, address)
    try:
        @faas.function(name="dask_kill_map", timeout=30, backend="dask")
        def slow_double(x):
            if x == 600:  # the worker running this one is killed while it sleeps
                print("slow item in zygote", os.getppid(), flush=True)
                time.sleep(3)
            time.sleep(0.005)
            return 2 * x

        n = 2000
        killed = {}

        def kill_the_worker_running_item_600():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                logs = conn.request("GET", "/faas/api/functions/dask_kill_map/logs",
                                    params={"limit": 500})["logs"]
                found = [e["line"] for e in logs if e["line"].startswith("slow item in zygote")]
                if found:
                    worker_pid = psutil.Process(int(found[0].split()[-1])).ppid()
                    victim = next(w for w in cluster.workers if w.pid == worker_pid)
                    killed["kids"] = cluster.kill_worker(victim)
                    return
                time.sleep(0.1)

        import threading
        slow_double.deploy()
        killer = threading.Thread(target=kill_the_worker_running_item_600)
        killer.start()
        results = slow_double.map(range(n), concurrency=32)
        killer.join()
        assert "kids" in killed, "the worker running item 600 was not found"
        assert results == [2 * x for x in range(n)]                       # all, in order
        rows = _all_invocations(conn, "dask_kill_map")
        assert len(rows) == n and {r["status"] for r in rows} == {"succeeded"}  # each item once
        assert len({r["request_id"] for r in rows}) == n
        lines = conn.request("GET", "/faas/api/functions/dask_kill_map/logs",
                             params={"limit": 100_000})["logs"]
        retries = [entry for entry in lines if entry["line"].startswith("RETRY RequestId")]
        assert retries, "no invocation recorded a retry after its worker died"
        assert "attempt 2" in retries[0]["line"] and "left the cluster" in retries[0]["line"]
        slow_rid = next(e["request_id"] for e in lines if e["line"].startswith("slow item"))
        assert slow_rid in {e["request_id"] for e in retries}
        # a retried invocation ended once: one END, one REPORT
        retried = {entry["request_id"] for entry in retries}
        ends = [e for e in lines if e["request_id"] in retried and e["line"].startswith("END RequestId")]
        assert len(ends) == len(retried)
        # a re-run that started its environment anew on the other worker reports that INIT
        for rid in retried:
            own = [e["line"] for e in lines if e["request_id"] == rid]
            after = own[next(i for i, line in enumerate(own) if line.startswith("RETRY")):]
            report = next(line for line in own if line.startswith("REPORT"))
            if any(line.startswith("INIT_START") for line in after):
                assert "Init Duration" in report, own
        slow = [e for e in lines if e["line"].startswith("slow item")]
        assert len(slow) == 2 and slow[0]["request_id"] == slow[1]["request_id"]  # ran twice, one row
        # the killed worker's zygote and environments died with it
        gone, alive = psutil.wait_procs(killed["kids"], timeout=10)
        assert not alive
    finally:
        discovery.reset()


def test_a_rerun_that_cold_starts_on_another_worker_reports_its_init_duration(make_server, cluster):
    """A warm invocation whose worker is killed mid-run is run again on the other worker, where
    its version has no environment: that cold start's INIT_START, INIT output and Init Duration
    are in its logs and REPORT, and its row names the worker that ran it to the end."""
    address = cluster.start_scheduler()
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    cluster.wait_workers(2)
    conn, _ = _serve_on(make_server, address)
    try:
        def setup():
            print("INIT in", os.getpid(), flush=True)

        @faas.function(name="dask_rerun_init", timeout=60, backend="dask", init=setup)
        def work(slow):
            print("zygote", os.getppid(), flush=True)
            if slow:
                time.sleep(30)          # killed with its worker before this ends
            return os.getpid()

        first = work.invoke(False)
        assert first.report.init_duration_ms is not None
        fut = work.spawn(True)          # warm, in the same environment, on the same worker
        deadline = time.monotonic() + 60
        while not any(line.startswith("zygote") for line in fut.logs):
            assert time.monotonic() < deadline, f"the slow invocation did not start: {list(fut.logs)}"
            time.sleep(0.02)
        zygote = int(next(line for line in fut.logs if line.startswith("zygote")).split()[1])
        victim = next(w for w in cluster.workers if w.pid == psutil.Process(zygote).ppid())
        started = conn.request("GET", f"/faas/api/invocations/{fut.request_id}")
        killed_on = started["environment_id"].split("@", 1)[1]
        cluster.kill_worker(victim)
        fut.result(timeout=120)                                  # ran again, to the end
        inv = faas.Invocation.from_id(fut.request_id)
        logs = list(inv.logs)
        retry = next(i for i, line in enumerate(logs) if line.startswith("RETRY RequestId"))
        init = next(i for i, line in enumerate(logs) if line.startswith("INIT_START") and i > retry)
        assert any(line.startswith("INIT in") for line in logs[init:])   # INIT ran again there
        assert inv.report.init_duration_ms is not None and inv.report.init_duration_ms > 0
        report = next(line for line in logs if line.startswith("REPORT RequestId"))
        assert "Init Duration" in report
        ended = conn.request("GET", f"/faas/api/invocations/{fut.request_id}")
        assert ended["init_duration_ms"] == inv.report.init_duration_ms
        ended_on = ended["environment_id"].split("@", 1)[1]
        assert ended_on != killed_on and ended_on.startswith("tcp://127.0.0.1:")
    finally:
        discovery.reset()


def test_scheduler_killed_fails_in_flight_with_its_address_and_local_still_serves(make_server, cluster):
    address = cluster.start_scheduler()
    cluster.add_worker("w1")
    cluster.wait_workers(1)
    conn, server = _serve_on(make_server, address, "--FaaSServer.dask_connect_timeout=3")
    try:
        @faas.function(name="dask_long", timeout=60, backend="dask")
        def long():
            print("started", flush=True)
            time.sleep(30)

        @faas.function(name="dask_then_local", backend="local")
        def local_one(x):
            return x + 1

        fut = long.spawn()
        deadline = time.monotonic() + 30
        while "started" not in fut.logs:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cluster.scheduler.send_signal(signal.SIGKILL)
        cluster.scheduler.wait(10)
        with pytest.raises(faas.ServerError, match=address.replace(".", r"\.")) as info:
            fut.result(timeout=60)
        assert "unreachable" in str(info.value)
        assert local_one(1) == 2                                 # the server serves on
        with pytest.raises(faas.ServerError, match="unreachable"):
            long()                                               # and names the cluster again
        assert server.proc.poll() is None
    finally:
        discovery.reset()


def test_a_worker_without_kernel_workers_says_what_to_install(make_server, cluster):
    address = cluster.start_scheduler()
    cluster.add_worker("bare", without_kernel_workers=True)
    cluster.wait_workers(1)
    conn, _ = _serve_on(make_server, address)
    try:
        with pytest.raises(faas.ServerError, match=r"cannot import kernel_workers.*tcp://127.*pip install jupyter_faas"):
            square(2)
    finally:
        discovery.reset()


def test_a_worker_in_its_own_network_namespace(make_server, cluster):
    """Scheduler, worker and server on separate addresses: the worker is in another network
    namespace and reaches the scheduler (and the server reaches it) over a veth pair."""
    ns = NetNamespace.create()
    if ns is None:
        pytest.fail("network namespaces need root and `ip netns` (iproute2); CI runs as root "
                    "on a machine that has them")
    try:
        address = cluster.start_scheduler(host=ns.host_ip)
        cluster.add_worker("netns", netns=ns)
        cluster.wait_workers(1)
        conn, _ = _serve_on(make_server, address)
        try:
            fut = square.spawn(12)
            assert fut.result(timeout=60) == 144
            assert any(line.startswith("pid ") for line in fut.logs)            # lines came live
            row = conn.request("GET", f"/faas/api/invocations/{fut.request_id}")
            assert f"@tcp://{ns.ip}:" in row["environment_id"]                   # ran in the namespace
        finally:
            discovery.reset()
    finally:
        SEEN.extend(cluster.descendants())
        cluster.stop()
        ns.delete()


def _cgroups_writable() -> bool:
    """Whether this machine lets a process make memory cgroups (the probe is removed again)."""
    from kernel_workers.memory import CgroupV1Memory
    probe = CgroupV1Memory.create("probe-dask-test-%d" % os.getpid())
    if probe is not None:
        probe.close()
    return probe is not None
