"""Timeout, memory (both enforcement paths), concurrency and idle scale-to-zero."""

import os
import time

import psutil
import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_timeout_kills_environment_and_its_children(conn, tmp_path):
    marker = tmp_path / "child.pid"

    @faas.function(timeout=1, name="slow_parent")
    def slow(path):
        import subprocess
        child = subprocess.Popen(["sleep", "300"])
        with open(path, "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(60)

    with pytest.raises(faas.InvocationTimeout, match="Task timed out after 1.00 seconds") as info:
        slow(str(marker))
    env_pid, child_pid = map(int, marker.read_text().split())
    wait_for(lambda: not _pid_alive(env_pid) and not _pid_alive(child_pid),
             what="the environment and its child to be killed")
    inv = faas.Invocation.from_id(info.value.request_id)
    assert inv.status == "timed_out"
    assert inv.logs[-1].endswith("Status: timeout\t")

    # The next call gets a fresh environment.
    @faas.function(timeout=1, name="slow_parent")
    def quick(path):
        return os.getpid()
    assert quick("x") != env_pid


@pytest.mark.parametrize("mode", ["cgroup", "watchdog"])
def test_memory_limit_kills_with_peak_and_limit(make_server, mode, tmp_path):
    from jupyter_faas.server.backends.local.memory import CgroupV1Memory
    if mode == "cgroup" and CgroupV1Memory.create("probe-test") is None:
        pytest.fail("this machine has no writable cgroup v1 memory controller; "
                    "run with memory_enforcement=watchdog only where that is expected")
    server = make_server(f"--FaaSServer.memory_enforcement={mode}")
    faas.connect(server.url, server.token)
    try:
        status = discovery.default_connection().request("GET", "/faas/api/status")
        assert status["memory_enforcement"] == mode

        @faas.function(memory=128, timeout=20, name=f"hog_{mode}")
        def hog(mb, child=False):
            if child:  # the limit covers processes the environment starts, too
                import subprocess
                import sys
                subprocess.run([sys.executable, "-c",
                                f"import time; b = b'x' * ({mb} * 2**20); time.sleep(10)"], check=False)
                return "child done"
            data = b"x" * (mb * 2**20)
            time.sleep(2)
            return len(data)

        with pytest.raises(faas.OutOfMemory) as info:
            hog(400)
        msg = str(info.value)
        assert "hit its limit of 128 MB" in msg and "Raise memory=" in msg
        peak = int(msg.split("used ")[1].split(" MB")[0])
        assert peak >= 128

        if mode == "cgroup":
            # the kernel counts the child against the environment's limit
            with pytest.raises(faas.OutOfMemory):
                inv = hog.invoke(400, child=True)
                assert inv.result != "child done"
                raise inv.error
        else:
            with pytest.raises(faas.OutOfMemory):
                hog(400, child=True)

        # Max Memory Used is per invocation, also in a warm environment.
        @faas.function(memory=512, timeout=20, name=f"measure_{mode}")
        def measure(mb):
            data = b"x" * (mb * 2**20)
            time.sleep(0.3)  # give the watchdog a sample
            return len(data)

        small1 = measure.invoke(1)
        big = measure.invoke(200)
        small2 = measure.invoke(1)
        assert small2.report.init_duration_ms is None  # same warm environment
        assert big.report.max_memory_used_mb >= 200
        assert small2.report.max_memory_used_mb < 150, (small1.report, big.report, small2.report)
    finally:
        discovery.reset()


def test_reserved_concurrency_throttles_sync_calls_but_map_queues(conn):
    @faas.function(concurrency=1, timeout=10, name="one_at_a_time")
    def slow(x):
        time.sleep(1.5)
        return x

    first = slow.spawn(1)
    with pytest.raises(faas.Throttled, match="reserved concurrency"):
        slow(2)
    assert first.result(30) == 1
    assert slow.map(range(3)) == [0, 1, 2]  # queues instead of throttling
    rows = conn.request("GET", "/faas/api/invocations", params={"function": "one_at_a_time",
                                                                 "status": "throttled"})
    assert len(rows["invocations"]) == 1


def test_idle_environments_scale_to_zero(make_server):
    server = make_server("--FaaSServer.idle_timeout=0.5")
    faas.connect(server.url, server.token)
    try:
        @faas.function(name="brief")
        def brief():
            return os.getpid()
        pid = brief()
        assert _pid_alive(pid)
        wait_for(lambda: not _pid_alive(pid), what="the idle environment to stop")
        assert brief() != pid  # a cold start again
    finally:
        discovery.reset()


def test_a_limit_file_that_is_reset_and_read_has_a_descriptor_for_each(tmp_path):
    # memory.max_usage_in_bytes is reset (written) before an invocation and read after it:
    # one cached write-only descriptor made every read fail, so the cgroup's peak never
    # reached Max Memory Used.
    from jupyter_faas.server.backends.local.memory import _OpenFiles
    path = tmp_path / "memory.max_usage_in_bytes"
    path.write_text("123456")
    files = _OpenFiles()
    files.write("env", str(path), b"0")
    assert files.read("env", str(path)) == b"023456"
    files.close("env")
    assert files.fds == {}


@pytest.mark.parametrize("mode", ["cgroup", "watchdog"])
def test_max_memory_used_of_a_timed_out_or_cancelled_invocation(make_server, mode, request):
    """The REPORT of an invocation that was killed (timeout, cancel) gives what it used, like a
    normal end of the same function, not the ~1 MB left once the killed process is gone."""
    from jupyter_faas.server.backends.local.memory import CgroupV1Memory
    if mode == "cgroup":
        if CgroupV1Memory.create("probe-test") is None:
            pytest.fail("this machine has no writable cgroup v1 memory controller; "
                        "run the tests as root on a cgroup v1 host (as CI does)")
    server = make_server(f"--FaaSServer.memory_enforcement={mode}")
    faas.connect(server.url, server.token)
    try:
        @faas.function(memory=256, timeout=1, name=f"killed_{mode}", show=False)
        def sleeper(seconds):
            time.sleep(seconds)
            return seconds

        normal = sleeper.invoke(0.2).report.max_memory_used_mb
        assert normal >= 5
        timed_out = sleeper.invoke(5)
        assert timed_out.status == "timed_out"
        assert timed_out.report.max_memory_used_mb >= normal * 0.8, (timed_out.report, normal)

        fut = sleeper.spawn(0.9)
        wait_for(lambda: fut.status == "running", what="the call running")
        assert fut.cancel()
        cancelled = wait_for(lambda: (inv := faas.Invocation.from_id(fut.request_id)).status
                             in ("cancelled", "succeeded") and inv, what="its end stored")
        if cancelled.status == "cancelled":  # else it ended before the cancel reached it
            assert cancelled.report.max_memory_used_mb >= normal * 0.8, (cancelled.report, normal)
    finally:
        discovery.reset()
