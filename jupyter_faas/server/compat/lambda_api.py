"""The Lambda API's manager: Lambda's requests in, engine calls out, Lambda's shapes back.

No tornado here (the handlers in :mod:`.handlers` parse and serialise); this module
validates Lambda's parameters with Lambda's messages, keeps what Lambda has and the
engine does not (handler, runtime, role, description, the package's hash) in the
version's ``config["lambda"]``, and turns a function version into a
``FunctionConfiguration`` (reference/lambda.md §2).

Versions: the engine's versions are content-addressed (every new code or configuration
is a new internal version and the function's latest); Lambda's ``$LATEST`` is the
engine's latest, and a published version pins one (:mod:`..engine.versions`).  A version
dict here carries ``lambda_version`` (``$LATEST`` or ``"3"``).  Notebook functions (``@faas.function``, ``%%lambda``) are listed and
invocable here too; their ``Handler`` reads ``(notebook)`` and their code cannot be
replaced by a zip (delete and create the function instead).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import platform
import re
import sys
import uuid

from ... import limits
from ...errors import ResourceNotFound
from . import names
from .errors import LambdaError
from .layers import FunctionLayers, layer_arn
from .names import last_modified
from .packages import Packages

#: Lambda's reserved environment variables (a superset of limits.RESERVED_ENV)
RESERVED_ENV = limits.RESERVED_ENV | {
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "_X_AMZN_TRACE_ID", "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_PORT"}
NOTEBOOK_HANDLER = "(notebook)"
_ROLE = re.compile(r"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_CONFIG_KEYS = ("Role", "Handler", "Description", "Timeout", "MemorySize", "Environment", "Runtime",
                "RevisionId")


def _validation(value, field: str, constraint: str) -> LambdaError:
    return LambdaError.invalid(f"1 validation error detected: Value '{value}' at '{field}' failed to "
                               f"satisfy constraint: {constraint}")


class LambdaAPI:
    """What the Lambda API's handlers call, over the engine's :class:`~..engine.Service`."""

    def __init__(self, service, packages: Packages):
        self.service = service
        self.packages = packages
        self.layers = FunctionLayers(service, packages)

    # ---- reading -------------------------------------------------------------------------

    def function(self, function_name: str, qualifier: str | None = None,
                 region: str = "us-east-1") -> dict:
        """The function version a name (any form) and qualifier resolve to; 404 if none."""
        name, qualifier = names.parse(function_name, qualifier)
        arn = names.function_arn(region, name, qualifier)
        try:
            return self.service.versions.get(name, qualifier)
        except ResourceNotFound:
            raise LambdaError.not_found(f"Function not found: {arn}") from None

    def configuration(self, f: dict, region: str) -> dict:
        """A version's ``FunctionConfiguration``."""
        lam = f.get("lambda") or {}
        if lam:
            code_sha, size = lam["code_sha256"], lam["code_size"]
        else:
            code_sha = base64.b64encode(bytes.fromhex(f["code_sha256"])).decode()
            size = len(self.service.registry.code(f))
        version = f.get("lambda_version", names.LATEST)
        revision = uuid.UUID(hashlib.sha256(f"{f['name']}:{f['version']}:{f['code_sha256']}:{version}"
                                            .encode()).hexdigest()[:32])
        out = {
            "FunctionName": f["name"],
            "FunctionArn": names.function_arn(region, f["name"], None if version == names.LATEST else version),
            "Runtime": lam.get("runtime") or f"python{sys.version_info[0]}.{sys.version_info[1]}",
            "Role": lam.get("role") or f"arn:aws:iam::{names.ACCOUNT_ID}:role/jupyter-faas",
            "Handler": lam.get("handler") or NOTEBOOK_HANDLER,
            "CodeSize": size,
            "Description": f.get("description") or lam.get("description", ""),
            "Timeout": math.ceil(f["timeout"]),
            "MemorySize": f["memory"],
            "LastModified": last_modified(f["updated_at"]),
            "CodeSha256": code_sha,
            "Version": version,
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": str(revision),
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"],
            "EphemeralStorage": {"Size": 512},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{f['name']}"},
        }
        if f.get("env"):
            out["Environment"] = {"Variables": dict(f["env"])}
        layers = lam.get("layers") or f.get("layers")  # a zip function's, or a notebook function's
        if layers:
            out["Layers"] = [{"Arn": layer.get("arn") or layer_arn(region, layer["name"], layer["version"]),
                              "CodeSize": layer["code_size"]} for layer in layers]
        return out

    def list(self, marker: str | None, max_items: int) -> tuple[list[dict], str | None]:
        """One page of functions by name, after ``marker`` (the last name of the page before)."""
        functions = [f for f in self.service.list_functions() if marker is None or f["name"] > marker]
        page = functions[:max_items]
        return page, (page[-1]["name"] if len(functions) > max_items else None)

    # ---- writing -------------------------------------------------------------------------

    def create(self, body: dict) -> dict:
        name, qualifier = names.parse(body.get("FunctionName") or "")
        if qualifier is not None:
            raise LambdaError.invalid("FunctionName must not carry a qualifier when creating a function")
        if body.get("PackageType", "Zip") != "Zip":
            raise LambdaError.invalid(f"PackageType {body['PackageType']!r} is not supported: jupyter_faas "
                                      f"runs zip packages (PackageType Zip)")
        zipped = self._zip(body.get("Code"))
        if not body.get("Handler"):
            raise LambdaError.invalid("Handler is required for a function of PackageType Zip")
        try:
            self.service.get_function(name)
        except ResourceNotFound:
            pass
        else:
            raise LambdaError.conflict(f"Function already exist: {name}")
        package = self.packages.add(zipped)
        lam = self._lambda_config(body, {}, package)
        config = self._engine_config(body, None)
        return self.service.deploy(name, self._code(lam), lambda_config=lam, **config)

    def update_code(self, f: dict, body: dict) -> dict:
        self._check_revision(f, body)
        lam = f.get("lambda")
        if not lam:
            raise LambdaError.invalid(f"{f['name']} was deployed from a notebook: its code is a pickled "
                                      f"function, not a zip. Delete it and create it from the zip.")
        package = self.packages.add(self._zip(body))
        lam = dict(lam, zip_sha256=package.sha256, code_sha256=package.code_sha256, code_size=package.size)
        return self.service.deploy(f["name"], self._code(lam), lambda_config=lam, **self._engine_config({}, f))

    def update_configuration(self, f: dict, body: dict) -> dict:
        self._check_revision(f, body)
        lam = f.get("lambda")
        config = self._engine_config(body, f)
        if not lam:
            if any(k in body for k in ("Handler", "Runtime", "Role", "Description", "Layers")):
                raise LambdaError.invalid(f"{f['name']} was deployed from a notebook: only MemorySize, "
                                          f"Timeout and Environment can be changed here")
            return self.service.deploy(f["name"], self.service.registry.code(f), **config)
        lam = self._lambda_config(body, lam, None)
        return self.service.deploy(f["name"], self._code(lam), lambda_config=lam, **config)

    def set_concurrency(self, f: dict, reserved: int | None) -> dict:
        config = dict(self._engine_config({}, f), concurrency=reserved)
        code = self.service.registry.code(f)
        if f.get("lambda"):
            return self.service.deploy(f["name"], code, lambda_config=f["lambda"], **config)
        return self.service.deploy(f["name"], code, **config)

    def delete(self, f: dict) -> None:
        self.service.delete_function(f["name"])

    def _code(self, lam: dict) -> bytes:
        """A zip function's code as the engine stores it: the handler's reference, with its
        layers' directories after its own on ``sys.path``."""
        return self.packages.handler_code(lam["zip_sha256"], lam["handler"],
                                          self.layers.paths(lam.get("layers") or []))

    # ---- validation ------------------------------------------------------------------------

    def _zip(self, code) -> bytes:
        if not isinstance(code, dict) or "ZipFile" not in code:
            raise LambdaError.invalid("Code.ZipFile is required: jupyter_faas takes the zip in the "
                                      "request (S3Bucket/S3Key and ImageUri are not reachable locally)")
        try:
            return base64.b64decode(code["ZipFile"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise LambdaError.invalid("Code.ZipFile is not base64") from None

    def _lambda_config(self, body: dict, old: dict, package) -> dict:
        lam = dict(old)
        if package is not None:
            lam.update(zip_sha256=package.sha256, code_sha256=package.code_sha256, code_size=package.size)
        if "Role" in body or not old:
            role = body.get("Role") or ""
            if not _ROLE.match(role):
                raise _validation(role, "role", "Member must satisfy regular expression pattern: "
                                                "arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+")
            lam["role"] = role
        if "Handler" in body:
            handler = body["Handler"]
            if not isinstance(handler, str) or not re.fullmatch(r"[^\s]{1,128}", handler):
                raise _validation(handler, "handler", "Member must satisfy regular expression pattern: [^\\s]+")
            lam["handler"] = handler
        if "Runtime" in body or not old:
            runtime = body.get("Runtime") or f"python{sys.version_info[0]}.{sys.version_info[1]}"
            if not re.fullmatch(r"python3\.\d+", runtime):
                raise LambdaError.invalid(f"The runtime parameter of {runtime} is not supported: "
                                          f"jupyter_faas runs Python handlers (python3.x), in this "
                                          f"server's Python {sys.version_info[0]}.{sys.version_info[1]}")
            lam["runtime"] = runtime
        if "Layers" in body:
            lam["layers"] = self.layers.resolve(body["Layers"] or [])
        if "Description" in body:
            if not isinstance(body["Description"], str) or len(body["Description"]) > 256:
                raise _validation(body["Description"], "description", "Member must have length less than or equal to 256")
            lam["description"] = body["Description"]
        return lam

    def _engine_config(self, body: dict, f: dict | None) -> dict:
        """memory, timeout, env, concurrency: from ``body`` where given, else from ``f`` (or defaults)."""
        memory = body.get("MemorySize", f["memory"] if f else limits.MEMORY_DEFAULT_MB)
        if isinstance(memory, bool) or not isinstance(memory, int) or not (
                limits.MEMORY_MIN_MB <= memory <= limits.MEMORY_MAX_MB):
            raise _validation(memory, "memorySize", f"Member must have value between {limits.MEMORY_MIN_MB} "
                                                    f"and {limits.MEMORY_MAX_MB}")
        timeout = body.get("Timeout", f["timeout"] if f else limits.TIMEOUT_DEFAULT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                limits.TIMEOUT_MIN_S <= timeout <= limits.TIMEOUT_MAX_S):
            raise _validation(timeout, "timeout", f"Member must have value between {limits.TIMEOUT_MIN_S} "
                                                  f"and {limits.TIMEOUT_MAX_S}")
        env = f["env"] if f else {}
        if "Environment" in body:
            env = self._environment(body["Environment"])
        out = {"memory": memory, "timeout": timeout, "env": env,
               "concurrency": f.get("concurrency") if f else None}
        if f and f.get("layers"):  # a notebook function keeps its layers
            out["layers"] = f["layers"]
        return out

    @staticmethod
    def _environment(environment) -> dict:
        variables = (environment or {}).get("Variables") or {}
        if not isinstance(variables, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in variables.items()):
            raise LambdaError.invalid("Environment.Variables must map strings to strings")
        reserved = sorted(k for k in variables if k in RESERVED_ENV)
        if reserved:
            raise LambdaError.invalid(
                "Lambda was unable to configure your environment variables because the environment "
                "variables you have provided contains reserved keys that are currently not supported "
                f"for modification. Reserved keys used in this request: {', '.join(reserved)}")
        bad = [k for k in variables if not re.fullmatch(r"[a-zA-Z]([a-zA-Z0-9_])*", k)]
        if bad:
            raise _validation(bad[0], "environment.variables", "Member must satisfy regular "
                                                               "expression pattern: [a-zA-Z]([a-zA-Z0-9_])*")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
        if size > limits.ENV_MAX_BYTES:
            raise LambdaError.invalid(
                "Lambda was unable to configure your environment variables because the environment "
                f"variables you have provided exceeded the 4KB limit. String measured: {size} bytes "
                f"of keys and values")
        return dict(variables)

    def _check_revision(self, f: dict, body: dict) -> None:
        given = body.get("RevisionId")
        if given and given != self.configuration(f, "us-east-1")["RevisionId"]:
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. Call the "
                              "GetFunction/GetAlias API to retrieve the latest Revision Id")
