"""Dependencies point one way: the worker runtime loads no tornado, IPython or jupyter_faas."""

import subprocess
import sys

import jupyter_faas


def test_kernel_workers_imports_only_stdlib_and_cloudpickle():
    code = ("import sys, kernel_workers.runtime, kernel_workers.zygote, kernel_workers.wire;"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tornado', 'IPython', 'jupyter_faas', 'ipykernel', 'traitlets', 'psutil')];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_pinned():
    assert sorted(jupyter_faas.__all__) == sorted([
        "__version__", "connect", "aws_env", "boto3_client", "function", "lookup", "RemoteFunction", "Invocation",
        "InvocationFuture", "invocations", "dead_letters", "redrive", "DeadLetter", "triggers", "Trigger",
        "queue", "queues", "Queue",
        "as_completed", "wait", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
        "Report", "FaaSError", "InvocationError", "FunctionError", "InvocationTimeout",
        "OutOfMemory", "RuntimeExited", "Cancelled", "Throttled", "SerializationError",
        "InvalidParameter", "PayloadTooLarge", "ResponseSizeTooLarge", "ResourceNotFound",
        "ServerError", "ServerStopped", "on_restore",
        "load_ipython_extension"])
    for name in jupyter_faas.__all__:
        assert hasattr(jupyter_faas, name)


def test_wire_version_mismatch_names_both_versions():
    import json
    import struct

    import pytest
    from kernel_workers import wire
    header = json.dumps({"k": "invoke", "v": 99}).encode()
    frame = struct.pack("!II", len(header), 0) + header
    with pytest.raises(wire.ProtocolError,
                       match=f"peer speaks 99, this side speaks {wire.PROTOCOL_VERSION}"):
        wire.unpack(frame)


# ---- the server's layers (docs/architecture.md) ---------------------------------------------

import ast  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import import_graph  # noqa: E402

SERVER = "jupyter_faas.server"


def _server_modules(layer: str) -> list[str]:
    prefix = f"{SERVER}.{layer}"
    return [m for m in import_graph.modules() if m == prefix or m.startswith(prefix + ".")]


def test_no_import_cycles_anywhere_in_the_project():
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_engine_imports_no_tornado_no_sqlite3_and_no_subprocesses():
    for module in _server_modules("engine"):
        tops = {name.split(".")[0] for name in import_graph.external(module)}
        assert not tops & {"tornado", "sqlite3", "subprocess", "socket"}, module


def test_only_api_and_compat_import_tornado_web_and_only_the_store_imports_sqlite3():
    """compat/ (Lambda's REST API) is a room of tornado handlers like api/."""
    for module in import_graph.modules():
        if not module.startswith(SERVER):
            continue
        names = import_graph.external(module)
        if any(n == "tornado.web" or n.startswith("tornado.web.") or n == "tornado.websocket"
               for n in names):
            assert module.startswith((f"{SERVER}.api", f"{SERVER}.compat")), module
        if "sqlite3" in names:
            assert module.startswith(f"{SERVER}.store"), module


def test_dependencies_point_one_way_between_the_layers():
    """api -> protocol -> engine -> model; compat -> engine -> model; store and backends are
    injected, never imported by the engine; nothing imports the api, compat or app but app."""
    g = import_graph.graph()
    allowed = {
        "api": {"protocol", "engine", "model", "triggers"},
        "compat": {"engine", "model"},
        "protocol": {"engine", "model"},
        "engine": {"model"},
        "store": {"model"},
        "backends": {"model"},
        "triggers": {"engine", "model"},
        "model": set(),
    }
    for module, deps in g.items():
        if not module.startswith(SERVER + "."):
            continue
        layer = module[len(SERVER) + 1:].split(".")[0]
        if layer not in allowed:
            continue
        for dep in deps:
            if dep.startswith(SERVER + "."):
                dep_layer = dep[len(SERVER) + 1:].split(".")[0]
                assert dep_layer == layer or dep_layer in allowed[layer], f"{module} imports {dep}"


def test_no_server_module_is_over_600_lines():
    for module, path in import_graph.modules().items():
        if module.startswith(SERVER):
            assert len(path.read_text().splitlines()) <= 600, module


def test_no_task_is_fire_and_forget():
    """A task whose reference is dropped can be collected by the loop mid-run (asyncio keeps
    only weak references): every ensure_future/create_task result is kept."""
    for module, path in import_graph.modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = getattr(func, "attr", getattr(func, "id", ""))
                assert name not in ("ensure_future", "create_task"), \
                    f"{module}:{node.lineno} drops the task it starts"


def test_the_panel_and_python_share_one_vocabulary_of_statuses():
    from jupyter_faas.vocabulary import STATUSES, TERMINAL
    ts = (Path(import_graph.ROOT) / "labextension" / "src" / "types.ts").read_text()
    listed = re.search(r"STATUSES: InvocationStatus\[\] = \[(.*?)\]", ts, re.S).group(1)
    assert re.findall(r"'(\w+)'|\"(\w+)\"", listed) and \
        [a or b for a, b in re.findall(r"'(\w+)'|\"(\w+)\"", listed)] == list(STATUSES)
    terminal = re.search(r"TERMINAL = new Set<InvocationStatus>\(\[(.*?)\]", ts, re.S).group(1)
    assert {a or b for a, b in re.findall(r"'(\w+)'|\"(\w+)\"", terminal)} == set(TERMINAL)
