"""The Lambda API's tornado handlers: parse, call :class:`~.lambda_api.LambdaAPI` or the
engine, serialise in Lambda's shapes.  Paths and status codes are botocore's model's
(reference/lambda.md §1–2)."""

from __future__ import annotations

import base64
import binascii
import json

from ... import limits
from ...errors import InvalidParameter
from ...vocabulary import SUCCEEDED, THROTTLED
from . import names
from .errors import LambdaError, LambdaHandler

#: Lambda's request limits for Invoke (reference/lambda.md §1.1, §5.3)
SYNC_REQUEST_BYTES = limits.SYNC_PAYLOAD_BYTES
ASYNC_REQUEST_BYTES = limits.ASYNC_PAYLOAD_BYTES
CLIENT_CONTEXT_BYTES = 3583
#: X-Amz-Log-Result carries the last 4 KB of the invocation's log
TAIL_BYTES = 4096
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


class FunctionsHandler(LambdaHandler):
    """``/2015-03-31/functions``: ListFunctions, CreateFunction."""

    def get(self):
        raw = self.get_query_argument("MaxItems", "50")
        try:
            max_items = int(raw)
        except ValueError:
            raise LambdaError.invalid(f"MaxItems {raw!r} is not a number") from None
        if not 1 <= max_items <= 10000:
            raise LambdaError.invalid(f"1 validation error detected: Value '{max_items}' at 'maxItems' "
                                      f"failed to satisfy constraint: Member must have value between 1 and 10000")
        page, marker = self.compat.list(self.get_query_argument("Marker", None) or None, max_items)
        out = {"Functions": [self.compat.configuration(f, self.region) for f in page]}
        if marker is not None:
            out["NextMarker"] = marker
        self.send_json(out)

    def post(self):
        f = self.compat.create(self.json_body())
        self.send_json(self.compat.configuration(f, self.region), 201)


class FunctionHandler(LambdaHandler):
    """``/2015-03-31/functions/{name}``: GetFunction, DeleteFunction."""

    def get(self, name):
        f = self.compat.function(name, self.get_query_argument("Qualifier", None), self.region)
        out = {"Configuration": self.compat.configuration(f, self.region), "Tags": {}}
        lam = f.get("lambda")
        out["Code"] = {"RepositoryType": "S3",
                       "Location": self.compat.packages.zip_path(lam["zip_sha256"]).as_uri() if lam else ""}
        if f.get("concurrency") is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": f["concurrency"]}
        self.send_json(out)

    def delete(self, name):
        f = self.compat.function(name, self.get_query_argument("Qualifier", None), self.region)
        _, qualifier = names.parse(name, self.get_query_argument("Qualifier", None))
        if qualifier not in (None, names.LATEST):
            if not qualifier.isdigit():
                raise LambdaError.invalid(f"Qualifier {qualifier!r}: delete an alias with DeleteAlias; "
                                          f"DeleteFunction takes a version number")
            try:
                self.service.versions.delete_version(f["name"], int(qualifier))
            except InvalidParameter as exc:
                raise LambdaError.conflict(exc.message) from None
        else:
            self.compat.delete(f)
            triggers = self.settings.get("faas_triggers")  # the app's triggers room, if it runs one
            if triggers is not None:
                triggers.delete_function(f["name"])  # Lambda deletes the function URL config too
        self.set_status(204)
        self.finish()


class ConfigurationHandler(LambdaHandler):
    """``/2015-03-31/functions/{name}/configuration``: Get/UpdateFunctionConfiguration."""

    def get(self, name):
        f = self.compat.function(name, self.get_query_argument("Qualifier", None), self.region)
        self.send_json(self.compat.configuration(f, self.region))

    def put(self, name):
        f = self.compat.update_configuration(self.compat.function(name, None, self.region), self.json_body())
        self.send_json(self.compat.configuration(f, self.region))


class CodeHandler(LambdaHandler):
    """``/2015-03-31/functions/{name}/code``: UpdateFunctionCode."""

    def put(self, name):
        body = self.json_body()
        f = self.compat.function(name, None, self.region)
        if "ZipFile" not in body:
            raise LambdaError.invalid("ZipFile is required: jupyter_faas takes the zip in the request "
                                      "(S3Bucket/S3Key and ImageUri are not reachable locally)")
        if body.get("DryRun"):
            self.compat.packages.add(self.compat._zip(body))
            self.send_json(self.compat.configuration(f, self.region))
            return
        f = self.compat.update_code(f, body)
        self.send_json(self.compat.configuration(f, self.region))


class ConcurrencyHandler(LambdaHandler):
    """Put/Get/DeleteFunctionConcurrency (``/2017-10-31`` and ``/2019-09-30``)."""

    def get(self, name):
        f = self.compat.function(name, None, self.region)
        self.send_json({} if f.get("concurrency") is None
                       else {"ReservedConcurrentExecutions": f["concurrency"]})

    def put(self, name):
        body = self.json_body()
        reserved = body.get("ReservedConcurrentExecutions")
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            raise LambdaError.invalid(f"1 validation error detected: Value '{reserved}' at "
                                      f"'reservedConcurrentExecutions' failed to satisfy constraint: "
                                      f"Member must have value greater than or equal to 0")
        f = self.compat.set_concurrency(self.compat.function(name, None, self.region), reserved)
        self.send_json({"ReservedConcurrentExecutions": f["concurrency"]})

    def delete(self, name):
        self.compat.set_concurrency(self.compat.function(name, None, self.region), None)
        self.set_status(204)
        self.finish()


class AccountSettingsHandler(LambdaHandler):
    """``/2016-08-19/account-settings``: GetAccountSettings."""

    def get(self):
        functions = self.service.list_functions()
        packages = self.compat.packages
        limit = self.service.slots.max_concurrency or 1000
        reserved = sum(f.get("concurrency") or 0 for f in functions)
        self.send_json({
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": packages.max_unzipped,
                             "CodeSizeZipped": packages.max_zipped, "ConcurrentExecutions": limit,
                             "UnreservedConcurrentExecutions": max(limit - reserved, 0)},
            "AccountUsage": {"TotalCodeSize": sum(self.compat.configuration(f, self.region)["CodeSize"]
                                                  for f in functions),
                             "FunctionCount": len(functions)}})


class InvokeHandler(LambdaHandler):
    """``POST /2015-03-31/functions/{name}/invocations``: Invoke (reference/lambda.md §1)."""

    async def post(self, name):
        headers = self.request.headers
        kind = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in INVOCATION_TYPES:
            raise LambdaError.invalid(f"1 validation error detected: Value '{kind}' at 'invocationType' "
                                      f"failed to satisfy constraint: Member must satisfy enum value set: "
                                      f"[Event, RequestResponse, DryRun]")
        log_type = headers.get("X-Amz-Log-Type", "None")
        if log_type not in ("None", "Tail"):
            raise LambdaError.invalid(f"1 validation error detected: Value '{log_type}' at 'logType' failed "
                                      f"to satisfy constraint: Member must satisfy enum value set: [None, Tail]")
        self._client_context(headers.get("X-Amz-Client-Context"))
        f = self.compat.function(name, self.get_query_argument("Qualifier", None), self.region)
        _, qualifier = names.parse(name, self.get_query_argument("Qualifier", None))
        payload = self.request.body or b"{}"
        limit = ASYNC_REQUEST_BYTES if kind == "Event" else SYNC_REQUEST_BYTES
        if len(payload) > limit:
            raise LambdaError(413, "RequestTooLargeException",
                              f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
        try:
            json.loads(payload)
        except ValueError as exc:
            raise LambdaError(400, "InvalidRequestContentException",
                              f"Could not parse request body into json: Could not parse payload into "
                              f"json: {exc}") from None
        if kind == "DryRun":
            self.set_status(204)
            self.finish()
            return
        # the qualifier, not the version it named: an alias with weights picks one per call
        version = qualifier or names.LATEST
        if kind == "Event":
            # Lambda's async path: the durable queue, with retries and destinations
            inv = self.service.invoke_async(f["name"], payload, version=version, triggered_by="lambda-api")
            self.request_id = inv.request_id
            self.set_header("x-amzn-RequestId", inv.request_id)
            self.set_status(202)
            self.finish()
            return
        inv = self.service.submit(f["name"], payload, encoding="json", version=version,
                                  invocation_type=kind)
        self.request_id = inv.request_id
        self.set_header("x-amzn-RequestId", inv.request_id)
        done, result = await inv.done
        if done["status"] == THROTTLED:
            error = done["error"] or {}
            raise LambdaError(429, "TooManyRequestsException", error.get("errorMessage", "Rate Exceeded."),
                              {"Retry-After": "1"},
                              Reason=error.get("reason") or "ConcurrentInvocationLimitExceeded")
        self.set_header("X-Amz-Executed-Version", inv.function.get("lambda_version", names.LATEST))
        self.set_header("Content-Type", "application/json")
        if log_type == "Tail":
            text = "".join(line + "\n" for _, _, line in inv.logs).encode()
            self.set_header("X-Amz-Log-Result", base64.b64encode(text[-TAIL_BYTES:]).decode())
        if done["status"] == SUCCEEDED:
            self.finish(bytes(result) if result else b"null")
            return
        self.set_header("X-Amz-Function-Error", "Unhandled")
        self.finish(json.dumps(error_payload(done["error"] or {}, inv.request_id)))

    @staticmethod
    def _client_context(value: str | None) -> None:
        if not value:
            return
        if len(value) > CLIENT_CONTEXT_BYTES:
            raise LambdaError.invalid(f"Client context must be at most {CLIENT_CONTEXT_BYTES} bytes")
        try:
            json.loads(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise LambdaError.invalid("Client context must be a valid Base64-encoded JSON object.") from None


def error_payload(error: dict, request_id: str) -> dict:
    """Lambda's body for a failed invocation: ``errorMessage``, ``errorType``, ``requestId`` and the
    handler's frames as ``stackTrace`` (the lines of the traceback that name a file)."""
    frames = [entry for entry in error.get("stackTrace") or [] if entry.startswith("  File ")]
    return {"errorMessage": error.get("errorMessage", ""), "errorType": error.get("errorType", "Unhandled"),
            "requestId": request_id, "stackTrace": frames}

