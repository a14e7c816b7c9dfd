"""jupyter_faas/server/openapi.yaml lists exactly the server's routes and their methods.

The paths and their operations are read with a regex over the file's lines (paths
are the keys indented two spaces under ``paths:``, operations the keys indented four
spaces under a path), so the check needs no YAML library; when PyYAML is installed
the whole document is parsed too, and must agree with the regex and be well formed.
"""

from __future__ import annotations

import re
from pathlib import Path

from tornado import web, websocket

import jupyter_faas.server
from jupyter_faas.server.api import routes

SPEC = Path(jupyter_faas.server.__file__).with_name("openapi.yaml")
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
WS_PATH = "/faas/api/ws"

_PATH_LINE = re.compile(r"^  (/faas/api/[^:\s]*):\s*$")
_OP_LINE = re.compile(r"^    (" + "|".join(METHODS) + r"):\s*$")


def _openapi_path(pattern: str) -> str:
    """``/faas/api/functions/(?P<name>[^/]+)`` -> ``/faas/api/functions/{name}``."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).rstrip("$")
    assert not re.search(r"[()\[\]\\*+?]", path), f"unconverted regex in route {pattern!r}"
    return path


def _route_methods() -> dict[str, set[str]]:
    """Each route's OpenAPI path -> the HTTP methods its handler class implements."""
    out = {}
    for pattern, handler in routes():
        implemented = {m for m in METHODS
                       if getattr(handler, m) is not getattr(web.RequestHandler, m)}
        out[_openapi_path(pattern)] = implemented
    return out


def _spec_lines() -> list[str]:
    return SPEC.read_text(encoding="utf-8").splitlines()


def _regex_paths() -> dict[str, set[str]]:
    """Paths and their operations from the text of the spec, without a YAML parser."""
    lines = _spec_lines()
    start = lines.index("paths:")
    out: dict[str, set[str]] = {}
    current = None
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break  # the next top-level key ends ``paths:``
        m = _PATH_LINE.match(line)
        if m:
            assert m.group(1) not in out, f"path {m.group(1)} is listed twice"
            current = out[m.group(1)] = set()
            continue
        assert not re.match(r"^  \S", line), f"unexpected key under paths: {line!r}"
        m = _OP_LINE.match(line)
        if m and current is not None:
            current.add(m.group(1))
    return out


def test_spec_paths_are_the_routes():
    spec = _regex_paths()
    routes_ = _route_methods()
    assert set(spec) == set(routes_), (
        f"only in the spec: {sorted(set(spec) - set(routes_))}; "
        f"only in routes(): {sorted(set(routes_) - set(spec))}")


def test_spec_methods_are_the_handlers_methods():
    spec = _regex_paths()
    for path, implemented in _route_methods().items():
        if path == WS_PATH:
            continue
        assert implemented, f"{path}: its handler implements no HTTP method"
        assert path in spec, f"{path} is not in the spec"
        assert implemented <= spec[path], f"{path}: not in the spec: {sorted(implemented - spec[path])}"
        assert spec[path] <= implemented, (
            f"{path}: the spec has {sorted(spec[path] - implemented)}, which the handler "
            f"does not implement (it would answer 405)")


def test_websocket_route_documents_the_upgrade():
    handlers = dict((_openapi_path(p), h) for p, h in routes())
    assert issubclass(handlers[WS_PATH], websocket.WebSocketHandler)
    assert _regex_paths()[WS_PATH] == {"get"}
    text = SPEC.read_text(encoding="utf-8")
    for kind in ("invoke", "cancel", "accepted", "rejected", "log", "done"):
        assert f"`{kind}`" in text, f"websocket frame kind {kind!r} is not described"


def test_security_schemes_header_and_query():
    text = "\n".join(_spec_lines())
    assert re.search(r"^security:\n  - tokenHeader: \[\]\n  - tokenQuery: \[\]$", text, re.M)
    assert re.search(r"^    tokenHeader:\n      type: apiKey\n      in: header\n"
                     r"      name: Authorization$", text, re.M)
    assert re.search(r"^    tokenQuery:\n      type: apiKey\n      in: query\n"
                     r"      name: token$", text, re.M)


# ---- with PyYAML (installed with jupyter_faas[test] through jupyter_events) ------------------

def _load():
    import yaml  # PyYAML: a test dependency (pyproject [test])
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))


def test_yaml_agrees_with_the_regex():
    doc = _load()
    assert str(doc["openapi"]).startswith("3.0.")
    parsed = {path: {k for k in item if k in METHODS} for path, item in doc["paths"].items()}
    assert parsed == _regex_paths()


def test_yaml_security_and_refs():
    doc = _load()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["tokenHeader"] == {**schemes["tokenHeader"], "type": "apiKey", "in": "header",
                                      "name": "Authorization"}
    assert schemes["tokenQuery"] == {**schemes["tokenQuery"], "type": "apiKey", "in": "query",
                                     "name": "token"}
    assert doc["security"] == [{"tokenHeader": []}, {"tokenQuery": []}]

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]


def test_yaml_path_parameters_are_declared():
    doc = _load()
    components = doc["components"]["parameters"]

    def resolve(p):
        return components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p

    for path, item in doc["paths"].items():
        wanted = set(re.findall(r"{(\w+)}", path))
        for method in (k for k in item if k in METHODS):
            params = [resolve(p) for p in item.get("parameters", []) + item[method].get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == wanted, f"{method.upper()} {path}: path parameters {declared} != {wanted}"
            assert item[method]["responses"], f"{method.upper()} {path} has no responses"


def test_yaml_error_and_object_schemas_match_the_code():
    from jupyter_faas.server.model import TERMINAL, report
    from jupyter_faas.server.store import INVOCATION_COLUMNS

    schemas = _load()["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"Type", "errorType", "message"}
    assert schemas["Error"]["properties"]["Type"]["enum"] == ["User", "Service"]
    assert set(schemas["Invocation"]["properties"]) == set(INVOCATION_COLUMNS)
    assert set(schemas["InvocationStatus"]["enum"]) == set(TERMINAL) | {"queued", "running"}
    assert set(schemas["Report"]["properties"]) == set(report(1.0, 128, 10, None))
    function_fields = set()
    for part in schemas["Function"]["allOf"]:
        if "$ref" in part:
            part = schemas[part["$ref"].rsplit("/", 1)[1]]
        function_fields |= set(part.get("properties", {}))
    assert function_fields == {"name", "version", "code_sha256", "created_at", "updated_at",
                               "memory", "timeout", "env", "concurrency"}
