"""``%%lambda`` and ``%lambda`` in real kernels (nbclient) against a real server.

Each test runs one kernel and executes its cells one by one, so a misuse can be
checked cell by cell: the cell must fail (nbclient raises CellExecutionError)
and the kernel must stay usable.
"""

import ast
import json
import re

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook


class Kernel:
    """One live kernel; ``run`` executes a cell and returns what it showed, as text."""

    def __init__(self, client: NotebookClient, nb):
        self.client = client
        self.nb = nb

    def run_cell(self, source: str):
        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return cell

    def run(self, source: str) -> str:
        parts = []
        for out in self.run_cell(source).outputs:
            if out["output_type"] == "stream":
                parts.append(out["text"])
            elif out["output_type"] in ("execute_result", "display_data"):
                parts.append(out["data"].get("text/plain", ""))
        return "".join(parts)

    def value(self, source: str):
        """The cell's result (its execute_result), read back as a Python literal."""
        results = [o for o in self.run_cell(source).outputs if o["output_type"] == "execute_result"]
        assert len(results) == 1, f"no result from {source!r}"
        return ast.literal_eval(results[0]["data"]["text/plain"])

    def error(self, source: str) -> dict:
        """Run a cell that must fail; return its error output (ename, evalue, traceback)."""
        with pytest.raises(CellExecutionError):
            self.run_cell(source)
        errors = [o for o in self.nb.cells[-1].outputs if o["output_type"] == "error"]
        assert len(errors) == 1
        return errors[0]

    def fails(self, source: str) -> str:
        """Run a cell that must fail; return the error text nbclient reports."""
        with pytest.raises(CellExecutionError) as info:
            self.run_cell(source)
        return str(info.value)


@pytest.fixture
def kernel(server, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FAAS_URL", server.url)
    monkeypatch.setenv("JUPYTER_FAAS_TOKEN", server.token)
    nb = new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        k = Kernel(client, nb)
        k.run("%load_ext jupyter_faas")
        yield k


CONTEXT_CELL = '''\
%%lambda ctxfn --memory 256 --timeout 10 --env GREETING=hi --env EMPTY=
import os

def helper(x):
    return x

def handler(event, context):
    print("event is", event)
    return {
        "event": helper(event),
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
        "empty": os.environ.get("EMPTY"),
        "pid": os.getpid(),
    }

print("cell body ran")
'''


def test_cell_magic_deploys_handler_with_context_env_and_config(kernel):
    # the cell is the function's module: nothing of it runs in the kernel at deploy
    assert kernel.run(CONTEXT_CELL).startswith("deployed ctxfn (version 1)")
    assert kernel.run("import jupyter_faas\n"
                      "print(type(ctxfn).__name__, isinstance(ctxfn, jupyter_faas.RemoteFunction),\n"
                      "      ctxfn.name, ctxfn.config['memory'], ctxfn.config['timeout'])\n"
                      "print('helper' in dir(), 'handler' in dir())"
                      ) == "RemoteFunction True ctxfn 256 10.0\nFalse False\n"

    out = kernel.value("ctxfn({'a': 1})")
    assert out["event"] == {"a": 1}
    assert re.fullmatch(r"[0-9a-f-]{36}", out["aws_request_id"])
    assert out["function_name"] == "ctxfn"
    assert out["function_version"] == "$LATEST"  # Lambda's version; the engine's is ctxfn.version
    assert out["memory_limit_in_mb"] == "256"
    assert 0 < out["remaining"] <= 10_000
    assert out["greeting"] == "hi" and out["empty"] == ""
    # ... in another process, and --env did not touch the kernel's own environment
    assert kernel.value("import os\n(os.getpid(), os.environ.get('GREETING'))")[1] is None
    assert out["pid"] != kernel.value("os.getpid()")

    # a cell whose only function is not called handler deploys that function
    assert kernel.run("%%lambda triple\ndef times_three(x):\n    return 3 * x\n").startswith("deployed triple")
    assert kernel.value("triple.map([1, 2, 3, 4])") == [3, 6, 9, 12]
    assert kernel.value("triple(5)") == 15
    assert kernel.value("triple.local(7)") == 21

    # a plain lambda still works with the extension loaded
    assert kernel.value("f = lambda x: x + 1; f(1)") == 2
    assert kernel.value("g = [lambda: 'ok'][0]\ng()") == "ok"


def test_line_commands_ls_invoke_logs_rm(kernel, server):
    kernel.run("%%lambda echo --memory 256 --timeout 5\n"
               "def handler(event, context):\n"
               "    print('echo got', event)\n"
               "    return {'echo': event, 'request_id': context.aws_request_id}\n")

    listed = kernel.run("%lambda ls")
    assert re.search(r"^echo\s+v1\s+memory=256MB timeout=5s$", listed, re.M), listed

    # invoke: JSON event in, logs printed, the result is the cell's value
    cell = kernel.run_cell("%lambda invoke echo '{\"a\": 1}'")
    printed = "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")
    result = [o for o in cell.outputs if o["output_type"] == "execute_result"]
    value = ast.literal_eval(result[0]["data"]["text/plain"])
    assert value["echo"] == {"a": 1}
    rid = value["request_id"]
    lines = printed.splitlines()
    assert lines[0].startswith("INIT_START Runtime Version: python:")  # a cold start
    assert lines[1] == f"START RequestId: {rid} Version: $LATEST"
    assert "echo got {'a': 1}" in lines
    assert lines[-2] == f"END RequestId: {rid}"
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "Memory Size: 256 MB" in lines[-1]
    # with no event, the event is {}
    assert kernel.value("%lambda invoke echo")["echo"] == {}
    # the result can be assigned like any line magic's
    assert kernel.value("r = %lambda invoke echo '[1, 2]'\nr['echo']") == [1, 2]

    # logs: every invocation of the function, START to REPORT
    logs = kernel.run("%lambda logs echo")
    assert f"START RequestId: {rid} Version: $LATEST" in logs
    assert f"REPORT RequestId: {rid}\tDuration: " in logs
    assert logs.count("START RequestId: ") == 3 and logs.count("REPORT RequestId: ") == 3
    assert "echo got {'a': 1}" in logs and "echo got [1, 2]" in logs

    # rm: deletes it on the server and unbinds the name
    assert kernel.run("%lambda rm echo") == (
        "deleted echo; its invocations and logs stay in the store (%lambda logs echo)\n")
    assert kernel.value("'echo' in globals()") is False
    assert not re.search(r"^echo\s", kernel.run("%lambda ls"), re.M)
    err = kernel.fails("%lambda invoke echo '{}'")
    assert "ResourceNotFound" in err and "echo" in err


def test_misuse_fails_the_cell_and_deploys_nothing(kernel, server):
    err = kernel.fails("%%lambda\ndef handler(event, context):\n    return 1\n")
    assert "UsageError" in err and "needs a function name" in err

    err = kernel.fails("%%lambda --memory 256\ndef handler(event, context):\n    return 1\n")
    assert "UsageError" in err and "needs a function name" in err

    err = kernel.fails("%%lambda small --memory 64\ndef handler(event, context):\n    return 1\n")
    assert "InvalidParameter" in err and "memory=64" in err
    assert "128" in err and "10240" in err

    err = kernel.fails("%%lambda nan --memory lots\ndef handler(event, context):\n    return 1\n")
    assert "UsageError" in err and "is not a number" in err

    err = kernel.fails("%%lambda opt --size 3\ndef handler(event, context):\n    return 1\n")
    assert "UsageError" in err and "unknown option '--size'" in err

    err = kernel.fails("%%lambda two\ndef one(x):\n    return 1\n\ndef other(x):\n    return 2\n")
    assert "UsageError" in err and "exactly one function" in err and "one, other" in err

    err = kernel.fails("%%lambda none\nx = 1\n")
    assert "UsageError" in err and "it defined: none" in err

    err = kernel.fails("%%lambda syntax\ndef handler(event, context):\n    return (1\n")
    assert "SyntaxError" in err

    err = kernel.fails("%lambda invoke missing '{}'")
    assert "ResourceNotFound" in err and "missing" in err

    err = kernel.fails("%lambda invoke missing '{not json'")
    assert "UsageError" in err and "not valid JSON" in err

    kernel.run("%%lambda raiser\ndef handler(event, context):\n    raise ValueError(f'bad event {event}')\n")
    err = kernel.fails("%lambda invoke raiser '{\"k\": 2}'")
    assert "ValueError" in err and "bad event {'k': 2}" in err
    assert err.count("raise ValueError") <= 2  # the remote traceback, not the magic's frames twice

    err = kernel.fails("%lambda frobnicate")
    assert "UsageError" in err and "unknown command 'frobnicate'" in err

    # the kernel is still usable and none of those names was deployed or bound
    listed = kernel.run("%lambda ls")
    for name in ("small", "nan", "opt", "two", "none", "syntax", "missing"):
        assert not re.search(rf"^{name}\s", listed, re.M), listed
    assert kernel.value("[n for n in ('small', 'two', 'boom') if n in globals()]") == []
    assert kernel.value("json_ok = __import__('json').dumps({'ok': True}); json_ok") == json.dumps(
        {"ok": True})


def _shown(error: dict) -> list[str]:
    """The lines a notebook shows for an error (its traceback, ANSI colours removed)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"])).splitlines()


def test_every_lambda_error_is_one_line(kernel, server):
    """Like the magic's usage errors: the cell fails with one line naming what went wrong,
    not a traceback through the client; the error keeps its type."""
    kernel.run("%%lambda raiser\ndef handler(event, context):\n    raise ValueError(f'bad event {event}')\n")
    for source, ename, words in (
        ("%lambda invoke never_existed '{}'", "ResourceNotFound", "Function not found: never_existed"),
        ("%lambda logs never_existed", "ResourceNotFound", "never_existed"),
        ("%lambda rm never_existed", "ResourceNotFound", "never_existed"),
        ("%%lambda small --memory 64\ndef handler(event, context):\n    return 1\n",
         "InvalidParameter", "memory=64"),
        ("%lambda invoke raiser '{\"k\": 2}'", "ValueError", "bad event {'k': 2}"),
    ):
        error = kernel.error(source)
        shown = _shown(error)
        assert len(shown) == 1 and words in shown[0], (source, shown)
        assert error["ename"] == ename or (ename == "ValueError" and "ValueError" in shown[0]), error
    # A handler's own traceback is still shown (its code, not ours), before the one line.
    cell = kernel.nb.cells[-1]
    printed = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
    assert "raise ValueError(f'bad event {event}')" in printed or "in handler" in printed, printed
    assert "jupyter_faas/magics.py" not in printed and "connection.py" not in printed


def test_a_deleted_function_says_when_and_keeps_its_logs(kernel, server):
    kernel.run("%%lambda gone\ndef handler(event, context):\n    print('gone got', event)\n    return 1\n")
    kernel.run("kept = gone")
    assert kernel.value("%lambda invoke gone '{\"n\": 1}'") == 1
    kernel.run("%lambda rm gone")
    error = kernel.error("kept({'n': 2})")
    assert error["ename"] == "ResourceNotFound"
    assert "gone was deleted at" in error["evalue"] and "redeploy" in error["evalue"], error["evalue"]
    assert "Deploy it first" not in error["evalue"]
    shown = _shown(kernel.error("%lambda invoke gone '{}'"))
    assert len(shown) == 1 and "gone was deleted at" in shown[0], shown
    assert "gone got {'n': 1}" in kernel.run("%lambda logs gone")


MODULE_CELL = '''\
%%lambda module_fn --timeout 10
import os
open(os.path.join(MARKS, f"init-{os.getpid()}"), "w").close()
print("INIT loading table")
TABLE = {"scale": SCALE}
calls = 0

def handler(event, context):
    global calls
    calls += 1
    return {"pid": os.getpid(), "ppid": os.getppid(), "calls": calls, "value": event * TABLE["scale"]}
'''


def test_the_cell_is_the_module_run_at_init_in_the_environment(kernel, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # free names the notebook defines (MARKS, SCALE) are shipped by value
    kernel.run(f"import os\nMARKS = {str(marks)!r}\nSCALE = 10")
    assert kernel.run(MODULE_CELL).startswith("deployed module_fn (version 1)")
    assert list(marks.iterdir()) == []      # deploying ran nothing of the cell, here or there
    assert kernel.value("'TABLE' in dir() or 'calls' in dir()") is False

    cell = kernel.run_cell("r = module_fn.invoke(2)\nprint('\\n'.join(r.logs))\nr.result")
    printed = "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")
    first = ast.literal_eval([o for o in cell.outputs
                              if o["output_type"] == "execute_result"][0]["data"]["text/plain"])
    assert first["value"] == 20 and first["calls"] == 1
    # INIT ran once, outside the kernel: in the snapshot this environment was forked from
    # (its parent); its print is an INIT line, before START
    kernel_pid = kernel.value("os.getpid()")
    assert sorted(p.name for p in marks.iterdir()) == [f"init-{first['ppid']}"]
    assert first["ppid"] != kernel_pid
    lines = printed.splitlines()
    assert lines[0].startswith("INIT_START") and lines[1] == "INIT loading table"
    assert lines[2].startswith("START RequestId:")
    # warm: the module's state lives on, INIT does not run again
    second = kernel.value("module_fn(3)")
    assert second == dict(first, calls=2, value=30)
    assert len(list(marks.iterdir())) == 1

    # rebinding a shipped name deploys a new version (whose INIT sees the new value)
    kernel.run("SCALE = 100")
    assert kernel.value("module_fn(3)")["value"] == 300
    # .local runs the cell in the kernel, once, then the handler
    assert kernel.value("module_fn.local(1)")["value"] == 100
    assert kernel.value("module_fn.local(1)")["calls"] == 2
    assert f"init-{kernel_pid}" in [p.name for p in marks.iterdir()]


def test_an_init_error_in_the_cell_is_shown_with_its_traceback(kernel):
    assert kernel.run("%%lambda broken_init\nimport os\n"
                      "def handler(event, context):\n    return 1\n"
                      "raise RuntimeError('the cell raised at INIT')\n").startswith("deployed")
    error = kernel.error("broken_init({})")
    assert error["ename"] == "RuntimeError" and "the cell raised at INIT" in error["evalue"]
    shown = "\n".join(_shown(error))
    assert "raise RuntimeError('the cell raised at INIT')" in shown   # the cell's own line
    assert "INIT failed" in shown
    err = kernel.fails("%lambda invoke missing_init_module '{}'")
    assert "ResourceNotFound" in err
    kernel.run("%%lambda imports_missing\nimport not_installed_anywhere\n"
               "def handler(event, context):\n    return 1\n")
    error = kernel.error("imports_missing({})")
    assert error["ename"] == "ModuleNotFoundError"
    assert "Runtime.ImportModuleError" in "\n".join(_shown(error))


TRIGGERS_CELL = '''\
%%lambda resize --memory 512 --schedule "rate(1 minute)" --url none --on-file data/in/*.png --queue jobs_magic
def handler(event, context):
    return {"ok": True}
'''


def test_cell_magic_puts_triggers_on_the_function_once(kernel, server, tmp_path):
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    (tmp_path / "data" / "in").mkdir(parents=True)
    out = kernel.run(TRIGGERS_CELL)
    assert "resize: added schedule rate(1 minute)" in out and "resize: added queue jobs_magic" in out
    assert f"{server.url}/url/resize/" in out
    faas.connect(server.url, server.token)
    try:
        rows = {t.kind: t for t in faas.triggers(function="resize")}
        assert set(rows) == {"schedule", "url", "file", "queue"}
        assert rows["url"].spec == {"auth": "none", "owner": "%%lambda"}  # the cell made it
        assert rows["file"].spec["path"] == str(tmp_path / "data" / "in")
        assert rows["file"].spec["pattern"] == "*.png"
        assert rows["queue"].spec["queue"] == "jobs_magic"
        # running the cell again keeps them: no duplicate schedule firing twice as often
        assert kernel.run(TRIGGERS_CELL).count("kept") == 4
        assert len(faas.triggers(function="resize")) == 4
        # a bad trigger option fails the cell in one line
        err = kernel.error('%%lambda resize --schedule "rate(0 minutes)"\ndef handler(e, c):\n    pass\n')
        assert err["ename"] == "InvalidParameter" and len(err["traceback"]) == 1
        for t in faas.triggers(function="resize"):
            t.delete()
    finally:
        discovery.reset()


PROVISIONED_CELL = '''\
%%lambda warm_cell --provisioned 2
import os
print("INIT of warm_cell")

def handler(event, context):
    return os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]
'''


def test_provisioned_option_keeps_initialized_environments_for_the_cell(kernel, server):
    out = kernel.run(PROVISIONED_CELL)
    assert out.startswith("deployed warm_cell"), out
    assert "warm_cell: 2 provisioned environment(s) ready" in out, out
    # calls run in them: warm from the first, and the row and REPORT say which kind
    assert kernel.value("[warm_cell({}) for _ in range(3)]") == ["provisioned-concurrency"] * 3
    assert kernel.value("inv = warm_cell.invoke({})\n"
                        "(inv.report.init_type, inv.report.init_duration_ms, "
                        "any('Init Duration' in line for line in inv.logs))") == (
        "provisioned-concurrency", None, False)
    assert kernel.value("s = warm_cell.provisioned()\n(s['requested'], s['allocated'], s['status'])") == (
        2, 2, "READY")
    # the cell again without the option leaves it; --provisioned 0 stops it
    kernel.run(PROVISIONED_CELL.replace(" --provisioned 2", ""))
    assert kernel.value("warm_cell.provisioned()['requested']") == 2
    out = kernel.run(PROVISIONED_CELL.replace("--provisioned 2", "--provisioned 0"))
    assert "warm_cell: provisioned concurrency stopped" in out, out
    assert kernel.value("warm_cell.provisioned() is None") is True


def test_provisioned_option_misuse_fails_the_cell(kernel, server):
    body = "def handler(event, context):\n    return 1\n"
    err = kernel.fails(f"%%lambda neg --provisioned -1\n{body}")
    assert "UsageError" in err and "0 or more" in err
    err = kernel.fails(f"%%lambda words --provisioned lots\n{body}")
    assert "UsageError" in err and "is not a number" in err
    shown = _shown(kernel.error(f"%%lambda capped --concurrency 1 --provisioned 2\n{body}"))
    assert len(shown) == 1 and "InvalidParameter" in shown[0], shown
    assert "--provisioned 2 is over --concurrency 1" in shown[0], shown
    # INIT fails in the provisioned environments: the cell fails with INIT's error
    error = kernel.error("%%lambda init_breaks --provisioned 1\nraise RuntimeError('no model file')\n"
                         f"{body}")
    shown = _shown(error)
    assert len(shown) == 1 and "FAILED" in shown[0] and "no model file" in shown[0], shown
    assert error["ename"] == "FunctionError"


def test_a_refused_cell_changes_nothing_and_names_its_option(kernel, server):
    """Every option that can be checked is checked before the deploy: the cell fails in one
    line naming the option, and the function keeps its code and version."""
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    kernel.run("%%lambda pc\ndef handler(event, context):\n    return 'old'\n")
    conn = faas.connect(server.url, server.token)
    try:
        version = conn.request("GET", "/faas/api/functions/pc")["version"]
        new = "def handler(event, context):\n    return 'new'\n"
        for options, says in [
                ("--provisioned 100000", "--provisioned 100000 is refused: 100000 environments of pc "
                                         "at 128 MB is over the server's memory budget"),
                ("--concurrency 1 --provisioned 2", "--provisioned 2 is over --concurrency 1"),
                ("--memory 10240 --provisioned 900", "--provisioned 900 is refused: 900 environments of "
                                                     "pc at 10240 MB"),
                ('--schedule "rate(0 minutes)"', "--schedule 'rate(0 minutes)' is refused:"),
                ("--url bogus", "--url 'bogus' is refused: auth='bogus'"),
                ("--queue 'bad name'", "--queue 'bad name' is refused: queue name"),
                ("--on-file /no/such/dir/*.csv", "--on-file '/no/such/dir/*.csv' is refused:")]:
            shown = _shown(kernel.error(f"%%lambda pc {options}\n{new}"))
            assert len(shown) == 1 and shown[0].startswith("InvalidParameter: %%lambda pc: "), shown
            assert says in shown[0], (options, shown)
            assert conn.request("GET", "/faas/api/functions/pc")["version"] == version, options
            assert faas.triggers(function="pc") == []
            assert kernel.value("pc({})") == "old"
    finally:
        discovery.reset()


def test_a_cells_triggers_replace_what_it_set_before_and_rm_deletes_them(kernel, server):
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    body = "def handler(event, context):\n    return 1\n"
    conn = faas.connect(server.url, server.token)
    try:
        out = kernel.run(f'%%lambda sched --schedule "rate(1 hour)" --url none\n{body}')
        assert "sched: added schedule rate(1 hour)" in out, out
        python_made = faas.lookup("sched").schedule("rate(3 hours)")  # not the cell's: left alone

        def schedules():
            return sorted(t.spec["expression"] for t in faas.triggers(function="sched")
                          if t.kind == "schedule")
        out = kernel.run(f'%%lambda sched --schedule "rate(2 hours)" --url none\n{body}')
        assert "sched: removed schedule rate(1 hour)" in out and "sched: added schedule rate(2 hours)" in out
        assert "sched: kept url" in out, out
        assert schedules() == ["rate(2 hours)", "rate(3 hours)"]
        # the same cell again is idempotent
        assert kernel.run(f'%%lambda sched --schedule "rate(2 hours)" --url none\n{body}').count("kept") == 2
        assert schedules() == ["rate(2 hours)", "rate(3 hours)"]
        # a function URL with another auth replaces the cell's old one (one per function)
        out = kernel.run(f'%%lambda sched --schedule "rate(2 hours)" --url token\n{body}')
        assert "removed url" in out and "added url" in out, out
        urls = [t for t in faas.triggers(function="sched") if t.kind == "url"]
        assert [t.spec["auth"] for t in urls] == ["token"]

        # rm deletes the function's triggers and its URL; they do not come back with the name
        out = kernel.run("%lambda rm sched")
        assert "deleted sched" in out and "deleted its schedule rate(2 hours)" in out, out
        assert "deleted its url" in out and "deleted its schedule rate(3 hours)" in out, out
        assert faas.triggers(function="sched") == []
        with pytest.raises(faas.ResourceNotFound):
            python_made.refresh()
        kernel.run(f"%%lambda sched\n{body}")
        assert faas.triggers(function="sched") == []
        import urllib.error
        import urllib.request
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}/url/sched/")
        assert info.value.code == 404
    finally:
        for t in faas.triggers(function="sched"):
            t.delete()
        discovery.reset()
