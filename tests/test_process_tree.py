"""Every process an invocation started dies with it, and a killed invocation reports its real peak.

Both memory enforcement paths (cgroup v1 and the RSS watchdog) are run: they find the
processes to kill differently (``cgroup.procs`` against the process tree).
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

import jupyter_faas as faas
from jupyter_faas.client import discovery

MODES = ["cgroup", "watchdog"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition, seconds=15):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def final(request_id):
    """The invocation's row once it has ended (a cancelled future may be told before the end is stored)."""
    inv = faas.Invocation.from_id(request_id)
    wait_for(lambda: inv.refresh().done)
    return inv


def _require(mode):
    from jupyter_faas.server.backends.local.memory import CgroupV1Memory
    if mode == "cgroup" and CgroupV1Memory.create("probe-tree") is None:
        pytest.fail("this machine has no writable cgroup v1 memory controller")


@pytest.fixture(params=MODES)
def mode_server(request, make_server):
    _require(request.param)
    server = make_server(f"--FaaSServer.memory_enforcement={request.param}")
    faas.connect(server.url, server.token)
    status = discovery.default_connection().request("GET", "/faas/api/status")
    assert status["memory_enforcement"] == request.param
    yield request.param
    discovery.reset()


def daemonize_and_sleep(path):
    """A handler that leaves a daemon behind (setsid + double fork), then outlives its timeout."""
    import os
    import time
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
            time.sleep(300)
        os._exit(0)
    os.waitpid(pid, 0)  # the daemon is now an orphan: not a child of the environment any more
    while not os.path.exists(path):
        time.sleep(0.01)
    time.sleep(60)


def test_a_daemon_started_by_a_timed_out_invocation_dies_with_it(mode_server, tmp_path):
    marker = tmp_path / f"daemon-{mode_server}.pid"
    f = faas.function(daemonize_and_sleep, name=f"daemonize_{mode_server}", timeout=2)
    with pytest.raises(faas.InvocationTimeout):
        f(str(marker))
    daemon = int(marker.read_text())
    wait_for(lambda: not _alive(daemon))


def test_a_daemon_started_by_a_cancelled_invocation_dies_with_it(mode_server, tmp_path):
    marker = tmp_path / f"daemon-c-{mode_server}.pid"
    f = faas.function(daemonize_and_sleep, name=f"daemonize_c_{mode_server}", timeout=60)
    fut = f.spawn(str(marker))
    wait_for(marker.exists)
    daemon = int(marker.read_text())
    assert _alive(daemon)
    fut.cancel()
    with pytest.raises(faas.Cancelled):
        fut.result(30)
    wait_for(lambda: not _alive(daemon))


def hold_memory_and_sleep(mb, path):
    import os
    import time
    data = bytearray(mb * 2**20)  # touched: zero-filled pages are written
    for i in range(0, len(data), 4096):
        data[i] = 1
    open(path, "w").close()
    time.sleep(60)
    return len(data)


def test_timed_out_and_cancelled_invocations_report_their_real_peak(mode_server, tmp_path):
    f = faas.function(hold_memory_and_sleep, name=f"holder_{mode_server}", memory=256, timeout=2)
    with pytest.raises(faas.InvocationTimeout) as info:
        f(40, str(tmp_path / "t"))
    timed_out = final(info.value.request_id).report
    assert timed_out.max_memory_used_mb >= 40, timed_out

    g = faas.function(hold_memory_and_sleep, name=f"holder_c_{mode_server}", memory=256, timeout=60)
    started = tmp_path / "c"
    fut = g.spawn(40, str(started))
    wait_for(started.exists)
    fut.cancel()
    with pytest.raises(faas.Cancelled):
        fut.result(30)
    cancelled = final(fut.request_id)
    assert cancelled.status == "cancelled"
    assert cancelled.report.max_memory_used_mb >= 40, cancelled.report

    # An idle Python process is more than 5 MB: a killed handler that allocated nothing of
    # its own (its pages are the zygote's, shared) does not report 1 MB either.
    idle = faas.function(hold_memory_and_sleep, name=f"idle_{mode_server}", timeout=1)
    with pytest.raises(faas.InvocationTimeout) as info:
        idle(0, str(tmp_path / "i"))
    assert final(info.value.request_id).report.max_memory_used_mb > 5
    idle = faas.function(hold_memory_and_sleep, name=f"idle_c_{mode_server}", timeout=60)
    started = tmp_path / "ic"
    fut = idle.spawn(0, str(started))
    wait_for(started.exists)
    fut.cancel()
    with pytest.raises(faas.Cancelled):
        fut.result(30)
    assert final(fut.request_id).report.max_memory_used_mb > 5


def test_a_crashed_invocation_reports_its_real_peak(mode_server, tmp_path):
    @faas.function(name=f"crasher_{mode_server}")
    def crasher():
        import os
        import time
        time.sleep(0.5)  # the server samples the peak while it runs; a dead process has none
        os._exit(3)
    inv = crasher.invoke()
    assert inv.status == "failed"
    assert inv.report.max_memory_used_mb > 5, inv.report


def test_a_zygote_whose_server_dies_as_a_child_exits_kills_the_rest():
    """The server dies at the moment one environment exits: the zygote hears both at once,
    and its ``exited`` frame for the one fails against the dead server.  The others must
    die anyway (a zygote ended by that error once left an environment running 20 s more)."""
    import signal
    import socket
    import subprocess
    import sys

    from kernel_workers import wire

    server_end, zygote_end = socket.socketpair()
    zygote = subprocess.Popen([sys.executable, "-m", "kernel_workers.zygote", "--fd",
                               str(zygote_end.fileno())], pass_fds=[zygote_end.fileno()])
    zygote_end.close()
    channel = wire.BlockingChannel(server_end, buffered=False)
    ctls, pids = [], []
    try:
        assert channel.recv()[0]["k"] == "hello"
        for env_id in ("exits", "stays"):  # spares: each serves its control socket until EOF
            ctl, ctl_child = socket.socketpair()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            server_end.sendall(wire.pack("fork", env_id=env_id))
            socket.send_fds(server_end, [b"F"], [ctl_child.fileno(), out_w, err_w])
            for fd in (ctl_child.detach(), out_w, err_w):
                os.close(fd)
            header, _ = channel.recv()
            assert (header["k"], header["env_id"]) == ("forked", env_id)
            ctls.append(ctl)
            pids.append(header["pid"])
        exits, stays = (psutil.Process(pid) for pid in pids)

        zygote.send_signal(signal.SIGSTOP)  # so it sees the exit and the death in one poll
        ctls[0].close()
        wait_for(lambda: exits.status() == psutil.STATUS_ZOMBIE)
        server_end.close()  # the server dies
        zygote.send_signal(signal.SIGCONT)

        gone, alive = psutil.wait_procs([stays], timeout=10)
        assert not alive, "an environment outlived its zygote's server"
        assert zygote.wait(10) == 0
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        zygote.kill()
        zygote.wait()
