"""REST handlers under ``/faas/api/``: parse, authorise, call the service, serialise.

Errors are raised as :class:`~jupyter_faas.errors.FaaSError` subclasses and
rendered in one place (:meth:`BaseHandler.write_error`) the way Lambda renders
them: the status code, an ``x-amzn-ErrorType`` header and
``{"Type": "User", "message": ..., "errorType": ...}``.  The API is written
down in ``jupyter_faas/server/openapi.yaml``.
"""

from __future__ import annotations

import base64
import hmac
import json

from tornado import web

from kernel_workers import buffers

from ..errors import FaaSError, InvalidParameter, ServerError
from .lifecycle import TERMINAL


def token_matches(request, token: str) -> bool:
    """Whether a request carries ``token``: ``Authorization: token|Bearer <T>`` or ``?token=<T>``."""
    given = request.headers.get("Authorization", "")
    if given.lower().startswith("token "):
        given = given[6:].strip()
    elif given.lower().startswith("bearer "):
        given = given[7:].strip()
    else:
        given = "".join(v.decode(errors="replace") for v in request.query_arguments.get("token", [])[-1:])
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


class BaseHandler(web.RequestHandler):
    @property
    def service(self):
        return self.settings["faas_service"]

    def check_xsrf_cookie(self) -> None:
        pass  # token auth only: no cookies are ever issued, so there is nothing to forge

    def prepare(self) -> None:
        if not token_matches(self.request, self.settings["faas_token"]):
            self.set_status(403)
            self.set_header("x-amzn-ErrorType", "AccessDeniedException")
            self.finish({"Type": "User", "errorType": "AccessDeniedException",
                         "message": "a valid token is required: send 'Authorization: token <token>' "
                                    "(see the server's runtime file or JUPYTER_FAAS_TOKEN)"})

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise InvalidParameter(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidParameter("the request body must be a JSON object")
        return body

    def int_arg(self, name: str, default: int | None, lo: int = 0, hi: int = 10**9) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidParameter(f"query argument {name}={raw!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise InvalidParameter(f"query argument {name}={value} is out of range {lo}..{hi}")
        return value

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FaaSError):
            error_type, message = exc.error_type, exc.message
        elif isinstance(exc, web.HTTPError):
            error_type, message = "InvalidRequest", exc.log_message or self._reason
        else:
            error_type = ServerError.error_type
            message = f"internal server error ({type(exc).__name__}: {exc}); see the server log"
        self.set_header("x-amzn-ErrorType", error_type)
        self.finish({"Type": "User" if status_code < 500 else "Service",
                     "errorType": error_type, "message": message})

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, FaaSError):
            self.send_error(e.status_code if e.status_code >= 400 else 400,
                            exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


def _function_json(function: dict) -> dict:
    return {k: v for k, v in function.items() if k != "code"}


class StatusHandler(BaseHandler):
    def get(self):
        from .. import __version__
        files = self.service.files
        self.finish({"version": __version__, "max_payload_bytes": self.service.max_payload_bytes,
                     "instance": self.settings.get("faas_instance"),
                     "direct_socket": self.settings.get("faas_direct"),
                     **({"buffers": files.info()} if files is not None else {}),
                     **self.service.stats()})


class FunctionsHandler(BaseHandler):
    def get(self):
        self.finish({"functions": [_function_json(f) for f in self.service.list_functions()]})

    def post(self):
        body = self.json_body()
        try:
            code = base64.b64decode(body.get("code", ""), validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"'code' must be base64: {exc}") from exc
        kwargs = {k: body[k] for k in ("memory", "timeout", "env", "concurrency") if k in body}
        function = self.service.deploy(body.get("name"), code, **kwargs)
        self.set_status(201 if function.pop("created") else 200)
        self.finish(_function_json(function))


class FunctionHandler(BaseHandler):
    def get(self, name):
        self.finish(_function_json(self.service.get_function(name)))

    def delete(self, name):
        self.service.delete_function(name)
        self.set_status(204)
        self.finish()


class FunctionLogsHandler(BaseHandler):
    def get(self, name):
        self.service.get_function(name)
        limit = self.int_arg("limit", 200, 1, 100000)
        self.finish({"logs": self.service.store.function_logs(name, limit)})


class InvokeHandler(BaseHandler):
    """JSON in, JSON out: the path curl, the CLI and the panel use."""

    async def post(self, name):
        kind = self.get_query_argument("type", "RequestResponse")
        if kind not in ("RequestResponse", "Event"):
            raise InvalidParameter(f"type={kind!r} is not RequestResponse or Event")
        if self.request.body:
            try:
                json.loads(self.request.body)
            except ValueError as exc:
                raise InvalidParameter(f"Could not parse request body into json: {exc}") from exc
        inv = self.service.submit(name, self.request.body or b"{}", encoding="json",
                                  invocation_type=kind)
        if kind == "Event":
            self.set_status(202)
            self.finish({"request_id": inv.request_id, "status": inv.status})
            return
        done, result = await inv.done
        out = dict(done)
        # On failure the body is the pickled exception (for the Python client): never decode it here.
        out["result"] = json.loads(result) if result and done["status"] == "succeeded" else None
        out["logs"] = [line for _, _, line in inv.logs]
        self.finish(out)


class InvocationsHandler(BaseHandler):
    def get(self):
        status = self.get_query_argument("status", None)
        if status and status not in TERMINAL | {"queued", "running"}:
            raise InvalidParameter(f"status={status!r} is not one of queued, running, "
                                   f"{', '.join(sorted(TERMINAL))}")
        before = self.get_query_argument("before", None)
        try:
            before = float(before) if before is not None else None
        except ValueError:
            raise InvalidParameter(f"before={before!r} is not a timestamp") from None
        before_id = self.get_query_argument("before_id", None)
        if before_id is not None and before is None:
            raise InvalidParameter("before_id needs before (the created_at of the same row)")
        limit = self.int_arg("limit", 100, 1, 1000)
        rows = self.service.store.list_invocations(
            function=self.get_query_argument("function", None), status=status,
            limit=limit, before=before, before_id=before_id)
        last = rows[-1] if len(rows) == limit else None
        self.finish({"invocations": rows,
                     "next": {"before": last["created_at"], "before_id": last["request_id"]}
                     if last else None})


class InvocationHandler(BaseHandler):
    def get(self, request_id):
        self.finish(self.service.get_invocation(request_id))


class InvocationResultHandler(BaseHandler):
    def get(self, request_id):
        row = self.service.get_invocation(request_id)
        result = self.service.store.get_result(request_id) or b""
        descriptor = self.service.store.get_result_buffers(request_id)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("X-Faas-Encoding", row["encoding"])
        self.set_header("X-Faas-Status", row["status"])
        if descriptor is None:
            self.finish(result)
            return
        # The pickle, then its out-of-band buffers (whose lengths the header lists, in order).
        if self.service.files is None:
            raise ServerError(f"the result of {request_id} is in a buffer file, but this server runs "
                              f"with share_buffers off; start it with share_buffers on to read it")
        try:
            views = self.service.files.views(descriptor)
        except buffers.BufferFileError as exc:
            raise ServerError(f"the result of {request_id} is lost: {exc}") from exc
        self.set_header("X-Faas-Buffers", ",".join(str(v.nbytes) for v in views))
        self.write(result)
        for view in views:
            self.write(bytes(view))  # tornado writes bytes only; this is the remote path anyway
        self.finish()


class InvocationLogsHandler(BaseHandler):
    def get(self, request_id):
        self.service.get_invocation(request_id)
        after = self.int_arg("after", 0)
        limit = self.int_arg("limit", 10000, 1, 100000)
        logs = self.service.store.logs(request_id, after, limit)
        self.finish({"logs": logs})


class InvocationCancelHandler(BaseHandler):
    def post(self, request_id):
        self.service.get_invocation(request_id)
        self.finish({"request_id": request_id, "cancelled": self.service.cancel(request_id)})


class FunctionStatsHandler(BaseHandler):
    def get(self):
        monitoring = self.settings["faas_monitoring"]
        self.finish({"functions": monitoring.function_stats(), "prices": monitoring.prices()})


class FunctionMetricsHandler(BaseHandler):
    def get(self, name):
        self.service.get_function(name)
        minutes = self.int_arg("minutes", 60, 1, 10**6)
        self.finish(self.settings["faas_monitoring"].metrics(name, minutes))


class ShutdownHandler(BaseHandler):
    def post(self):
        self.finish({"stopping": True})
        self.settings["faas_shutdown"]()


def routes() -> list:
    from .events import EventSocket
    from .websocket import InvocationSocket
    p = "/faas/api"
    name = r"(?P<name>[^/]+)"
    rid = r"(?P<request_id>[^/]+)"
    return [
        (rf"{p}/status", StatusHandler),
        (rf"{p}/functions", FunctionsHandler),
        (rf"{p}/functions/{name}", FunctionHandler),
        (rf"{p}/functions/{name}/logs", FunctionLogsHandler),
        (rf"{p}/functions/{name}/invocations", InvokeHandler),
        (rf"{p}/invocations", InvocationsHandler),
        (rf"{p}/invocations/{rid}", InvocationHandler),
        (rf"{p}/invocations/{rid}/result", InvocationResultHandler),
        (rf"{p}/invocations/{rid}/logs", InvocationLogsHandler),
        (rf"{p}/invocations/{rid}/cancel", InvocationCancelHandler),
        (rf"{p}/metrics/functions", FunctionStatsHandler),
        (rf"{p}/metrics/functions/{name}", FunctionMetricsHandler),
        (rf"{p}/shutdown", ShutdownHandler),
        (rf"{p}/ws", InvocationSocket),
        (rf"{p}/events", EventSocket),
    ]
