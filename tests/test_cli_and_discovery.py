"""`jupyter faas ...` commands, and how a client finds (or starts) the server."""

import json
import os
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
    assert "jupyter faas stop" in second.stderr and "--FaaSServer.data_dir" in second.stderr
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
