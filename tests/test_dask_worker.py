"""The Dask worker's side (kernel_workers.dask_worker) in this process, without a cluster:
the task functions' results for each way an invocation ends, and the worker's own reaper."""

from __future__ import annotations

import os
import sys
import threading
import time

import cloudpickle
import psutil
import pytest

from conftest import wait_for
from kernel_workers import dask_worker

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the environment cannot import tests/
FUNCTION = {"name": "unit", "version": 1, "memory": 128, "timeout": 2, "env": {}}


@pytest.fixture
def server_id(request):
    """A host on this process (as on a worker); ``memory_mode`` as the server's memory_enforcement."""
    mode = getattr(request, "param", "auto")
    if mode == "cgroup" and not _cgroups_writable():
        pytest.fail("this machine has no writable cgroup v1 memory controller; run the tests as "
                    "root on a cgroup v1 host (as CI does)")
    sid = f"unit-{os.getpid()}-{time.monotonic_ns()}"
    dask_worker.host(sid, [], idle_s=1.0, memory_mode=mode)
    yield sid
    dask_worker.shutdown(sid)


def handler(how, arg=None):
    print("in", os.getpid(), flush=True)
    if how == "ok":
        return arg * 2
    if how == "raise":
        raise KeyError("nope")
    if how == "sleep":
        time.sleep(30)
    if how == "kill":
        os.kill(os.getpid(), 9)
    if how == "hog":
        hog = bytearray(300 * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(5)
    if how == "child hog":  # the limit covers the processes the environment starts
        import subprocess
        subprocess.run([sys.executable, "-c", "import time; b = b'x' * (300 * 2**20); time.sleep(10)"])
        time.sleep(5)
    if how == "cgroup":
        with open("/proc/self/cgroup") as f:
            return next(line for line in f.read().splitlines() if ":memory:" in line)


def _invoke(sid, *args, env_id="e1"):
    payload = cloudpickle.dumps((args, {}))
    return dask_worker.invoke(sid, None, env_id, FUNCTION, cloudpickle.dumps(handler), [],
                              f"r-{time.monotonic_ns()}", payload, "pickle")


def _pid(out) -> int:
    """The environment's pid, as the handler printed it."""
    return int(next(line for _, line in out["lines"] if line.startswith("in ")).split()[1])


def test_cold_then_warm_result_and_lines(server_id):
    first = _invoke(server_id, "ok", 21)
    assert first["kind"] == "result" and cloudpickle.loads(first["body"]) == 42
    assert first["init_ms"] > 0 and first["max_memory_mb"] > 0 and first["reusable"]
    assert [s for s, line in first["lines"] if line.startswith("in ")] == ["stdout"]
    # started here, not by a start task: Lambda's INIT_START line comes first
    assert first["lines"][0][0] == "platform" and first["lines"][0][1].startswith("INIT_START Runtime")
    second = _invoke(server_id, "ok", 1)
    assert second["init_ms"] is None                              # warm
    assert not any(line.startswith("INIT_START") for _, line in second["lines"])

    assert _pid(second) == _pid(first)                            # the same process


@pytest.mark.parametrize("how, kind, code", [("raise", "error", None), ("sleep", "timeout", -9),
                                             ("kill", "crash", -9), ("hog", "oom", -9)])
def test_each_end(server_id, how, kind, code):
    out = _invoke(server_id, how)
    assert out["kind"] == kind
    if kind == "error":
        assert out["header"]["errorType"] == "KeyError" and out["reusable"]
    else:
        assert out["returncode"] == code and not out["reusable"]
    if kind == "oom":
        assert out["max_memory_mb"] >= 128


@pytest.mark.parametrize("server_id", ["cgroup", "watchdog"], indirect=True)
@pytest.mark.parametrize("how", ["hog", "child hog"])
def test_memory_limit_by_cgroup_or_watchdog(server_id, how):
    h = dask_worker.host(server_id)
    mode = h.memory.mode
    line = cloudpickle.loads(_invoke(server_id, "cgroup")["body"])
    assert ("/jupyter_faas-dask-" in line) == (mode == "cgroup"), line   # its own cgroup, or none
    out = _invoke(server_id, how)
    assert out["kind"] == "oom" and out["max_memory_mb"] >= 128 and not out["reusable"], out
    assert dask_worker.heartbeat(server_id)["memory_enforcement"] == mode
    if mode == "cgroup":   # each environment's cgroup goes with it, and the host's with the host
        parent = h.memory.parent
        wait_for(lambda: not list(parent.glob("*/")), what="the dead environment's cgroup removed")
        dask_worker.shutdown(server_id)
        assert not parent.exists()


def test_cancel_from_another_thread(server_id):
    rid = "r-cancel"
    payload = cloudpickle.dumps((("sleep",), {}))
    threading.Timer(0.5, dask_worker.cancel, (server_id, rid)).start()
    out = dask_worker.invoke(server_id, None, "e1", FUNCTION, cloudpickle.dumps(handler), [], rid,
                             payload, "pickle")
    assert out["kind"] == "cancelled"
    # a cancelled request that arrives later is refused at once
    assert dask_worker.invoke(server_id, None, "e1", FUNCTION, b"", [], rid, payload, "pickle")["kind"] \
        == "cancelled"


def test_the_worker_stops_idle_environments_itself(server_id):
    out = _invoke(server_id, "ok", 1)
    pid = _pid(out)
    deadline = time.monotonic() + 10
    while not _dead(pid):
        assert time.monotonic() < deadline, "the idle environment was not stopped"
        time.sleep(0.1)
    # its death is counted once the worker's reaper has seen it (a moment after the pid is gone)
    while dask_worker.stats(server_id)["environments"] != 0:
        assert time.monotonic() < deadline, dask_worker.stats(server_id)
        time.sleep(0.05)


def _dead(pid: int) -> bool:
    """Gone, or a zombie (reaped between the two looks: gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_environment_that_died_while_idle_is_not_used(server_id):
    first = _invoke(server_id, "ok", 1)
    pid = _pid(first)
    os.kill(pid, 9)
    wait_for(lambda: _dead(pid), what="the environment to die")
    second = _invoke(server_id, "ok", 2)
    assert second["kind"] == "result" and cloudpickle.loads(second["body"]) == 4
    assert second["init_ms"] is not None                          # a new one, cold


def _cgroups_writable() -> bool:
    """Whether this machine lets a process make memory cgroups (the probe is removed again)."""
    from kernel_workers.memory import CgroupV1Memory
    probe = CgroupV1Memory.create("probe-dask-unit-%d" % os.getpid())
    if probe is not None:
        probe.close()
    return probe is not None
