"""`jupyter faas ...` commands, and how a client finds (or starts) the server."""

import json
import os
import re
import stat
import subprocess
import sys

import psutil

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def run_cli(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "jupyter_faas", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_cli_ls_invoke_logs_and_errors(server):
    faas.connect(server.url, server.token)
    try:
        @faas.function(name="cli_echo")
        def handler(event):
            print("got", event)
            return {"echo": event}
        handler.deploy()
    finally:
        discovery.reset()
    env = dict(server.env)
    assert "cli_echo" in run_cli(env, "ls").stdout
    out = run_cli(env, "invoke", "cli_echo", '{"a": 1}')
    assert json.loads(out.stdout) == {"echo": {"a": 1}}
    assert "got {'a': 1}" in out.stderr
    assert "START RequestId" in run_cli(env, "logs", "cli_echo").stdout
    bad = run_cli(env, "invoke", "cli_echo", "{nope", check=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    missing = run_cli(env, "invoke", "missing", "{}", check=False)
    assert missing.returncode == 2 and "Function not found: missing" in missing.stderr


def test_cli_status_names_the_server_and_says_when_none_runs(server, tmp_path):
    out = run_cli(dict(server.env), "status").stdout
    assert f"at {server.url} (pid {server.proc.pid}," in out
    assert "backend local (default)" in out and "invocations: " in out
    none = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "d"), JUPYTER_RUNTIME_DIR=str(tmp_path / "r"))
    none.pop("JUPYTER_FAAS_URL", None)
    missing = run_cli(none, "status", check=False)
    assert missing.returncode == 1 and "no FaaS server is running" in missing.stdout


def test_a_second_server_on_the_same_store_refuses_to_start_and_leaves_the_first_alone(server):
    before = server.runtime_file.read_text()
    second = subprocess.run([sys.executable, "-m", "jupyter_faas", "serve"], env=dict(server.env),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert (f"another FaaS server (pid {server.proc.pid}, at {server.url}) is using the store"
            in second.stderr), second.stderr
    assert "jupyter faas stop" in second.stderr
    # the option it names is one the server takes (it named --FaaSServer.data_dir, which is not)
    from jupyter_faas.server.app import FaaSServer
    named = re.search(r"--FaaSServer\.(\w+)", second.stderr)
    assert named and named.group(1) in FaaSServer.class_traits(config=True), second.stderr
    # The first one still owns its runtime file and serves.
    assert server.runtime_file.read_text() == before
    assert f"(pid {server.proc.pid}," in run_cli(dict(server.env), "status").stdout


def test_runtime_file_is_private_and_found(server):
    mode = stat.S_IMODE(os.stat(server.runtime_file).st_mode)
    assert mode == 0o600
    info = json.loads(server.runtime_file.read_text())
    assert info["url"] == server.url and info["token"] == server.token


def test_first_use_autostarts_one_shared_detached_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_FAAS")}
    env.update(JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    script = ("import jupyter_faas as faas, os\n"
              "f = faas.function(lambda x: x * 2, name='auto')\n"
              "print(f(21), faas.client.discovery.default_connection().url)\n")
    try:
        first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                               text=True, timeout=90)
        assert first.returncode == 0, first.stderr
        second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                text=True, timeout=90)
        assert first.stdout.split()[0] == "42"
        assert first.stdout.split()[1] == second.stdout.split()[1]  # the same server, shared
        info = json.loads((tmp_path / "rt" / "jupyter_faas-server.json").read_text())
        assert psutil.pid_exists(info["pid"])  # outlived the process that started it
    finally:
        out = run_cli(env, "stop")
        assert "stopped" in out.stdout
    wait_for(lambda: not psutil.pid_exists(info["pid"])
             or psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE, what="the server to exit")


def test_cli_logs_into_a_closed_pipe_exits_quietly(server):
    faas.connect(server.url, server.token)
    try:
        @faas.function(name="cli_chatty")
        def chatty(event):
            for i in range(3000):
                print("line", i)
        chatty.invoke({})
    finally:
        discovery.reset()
    # the reader takes one line and closes the pipe, as `| head -1` does
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_faas", "logs", "cli_chatty",
                             "--limit", "3000"], env=dict(server.env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_cli_invoke_of_a_zero_argument_function_says_how_to_call_it(server):
    faas.connect(server.url, server.token)
    try:
        @faas.function(name="cli_noargs")
        def noargs():
            return 1
        noargs.deploy()
    finally:
        discovery.reset()
    out = run_cli(dict(server.env), "invoke", "cli_noargs", check=False)
    assert out.returncode == 1
    assert "takes 0 positional arguments but 1 was given" in out.stderr
    assert "with one argument, the JSON event" in out.stderr
    assert "def cli_noargs(event)" in out.stderr and "faas.lookup('cli_noargs')" in out.stderr


def test_cli_stop_signals_only_a_faas_server_and_removes_a_stale_runtime_file(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "d"), JUPYTER_RUNTIME_DIR=str(tmp_path / "r"))
    env.pop("JUPYTER_FAAS_URL", None)
    # a runtime file left by a killed server, whose pid is now another process (this one's child)
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
    try:
        runtime = tmp_path / "r" / "jupyter_faas-server.json"
        runtime.parent.mkdir()
        runtime.write_text(json.dumps({"pid": bystander.pid, "url": "http://127.0.0.1:9", "token": "x"}))
        out = run_cli(env, "stop")
        assert "is no jupyter_faas serve of yours" in out.stdout and "removed the stale file" in out.stdout
        assert bystander.poll() is None  # not signalled
        assert not runtime.exists()
    finally:
        bystander.stdin.close()
        bystander.wait(10)


def test_a_starting_server_sweeps_the_scratch_dirs_of_killed_servers(make_server, tmp_path):
    import glob
    import tempfile
    server = make_server()
    pid = server.proc.pid
    mine = glob.glob(os.path.join(tempfile.gettempdir(), f"jupyter_faas-direct-{pid}-*"))
    envs = glob.glob(os.path.join(tempfile.gettempdir(), f"jupyter_faas-envs-{pid}-*"))
    assert len(mine) == 1 and len(envs) == 1  # named with its server's pid
    assert os.path.exists(os.path.join(mine[0], "direct.sock"))
    server.kill()  # SIGKILL: no cleanup of its own
    assert os.path.isdir(mine[0]) and os.path.isdir(envs[0])
    # a live process's directories are kept: this test process stands in for another server
    alive = tempfile.mkdtemp(prefix=f"jupyter_faas-direct-{os.getpid()}-")
    try:
        other = make_server()
        assert not os.path.exists(mine[0]) and not os.path.exists(envs[0])
        assert os.path.isdir(alive)
        assert glob.glob(os.path.join(tempfile.gettempdir(), f"jupyter_faas-direct-{other.proc.pid}-*"))
    finally:
        os.rmdir(alive)


def test_a_restarted_server_binds_its_last_port_when_it_is_free(make_server):
    """Function URLs and endpoints handed out (aws-env, a curl line) stay valid across a
    restart, a crash too; a port another process took meanwhile gives way to a free one."""
    import socket

    server = make_server()
    first = server.url
    server.stop()
    server.start()
    assert server.url == first
    server.kill()
    server.start()
    assert server.url == first
    port = int(first.rsplit(":", 1)[1])
    server.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server.start()
        assert server.url != first and server.url.startswith("http://127.0.0.1:")
