"""Lambda's error responses, and the base handler of the Lambda API (SigV4 + one renderer).

An error is ``status`` + ``x-amzn-ErrorType: <Code>`` + ``{"Type": "User"|"Service",
"message": ...}`` (``Message`` for the two codes Lambda's model spells that way), which
botocore turns into ``client.exceptions.<Code>`` (reference/lambda.md §1.3).  Handlers
raise :class:`LambdaError` or the engine's :class:`~jupyter_faas.errors.FaaSError`;
:meth:`LambdaHandler.write_error` renders both.
"""

from __future__ import annotations

import json

from tornado import web

from ...errors import FaaSError, PayloadTooLarge, ResourceNotFound, Throttled
from ..model import new_request_id
from .sigv4 import SignatureError, verify

#: codes whose message member Lambda's model spells ``Message``
_CAPITAL_MESSAGE = frozenset({"ResourceNotFoundException", "ServiceException"})


class LambdaError(Exception):
    """An error as Lambda answers it: HTTP ``status``, error ``code``, ``message`` and extra
    body members (``Reason`` of a 429); ``headers`` to add (``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **members):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.members = members

    @classmethod
    def invalid(cls, message: str) -> "LambdaError":
        return cls(400, "InvalidParameterValueException", message)

    @classmethod
    def not_found(cls, message: str) -> "LambdaError":
        return cls(404, "ResourceNotFoundException", message)

    @classmethod
    def conflict(cls, message: str) -> "LambdaError":
        return cls(409, "ResourceConflictException", message)

    def body(self) -> dict:
        key = "Message" if self.code in _CAPITAL_MESSAGE else "message"
        return {"Type": "User" if self.status < 500 else "Service", key: self.message, **self.members}


def from_faas_error(exc: FaaSError) -> LambdaError:
    """The engine's errors in Lambda's words."""
    if isinstance(exc, ResourceNotFound):
        return LambdaError.not_found(exc.message)
    if isinstance(exc, PayloadTooLarge):
        return LambdaError(413, "RequestTooLargeException", exc.message)
    if isinstance(exc, Throttled):
        return LambdaError(429, "TooManyRequestsException", exc.message, {"Retry-After": "1"},
                           Reason="ConcurrentInvocationLimitExceeded")
    if exc.status_code < 500:
        return LambdaError(400, exc.error_type if exc.error_type.endswith("Exception")
                           else "InvalidParameterValueException", exc.message)
    return LambdaError(500, "ServiceException", exc.message)


class LambdaHandler(web.RequestHandler):
    """Every Lambda API handler: SigV4 with the server's token, then Lambda's error shapes."""

    @property
    def service(self):
        return self.settings["faas_service"]

    @property
    def compat(self):
        """The :class:`~.lambda_api.LambdaAPI` this server configured."""
        return self.settings["faas_lambda"]

    def check_xsrf_cookie(self) -> None:
        pass  # SigV4 only: no cookies are ever issued, so there is nothing to forge

    def set_default_headers(self) -> None:
        if not hasattr(self, "request_id"):
            self.request_id = new_request_id()
        self.set_header("x-amzn-RequestId", self.request_id)

    def prepare(self) -> None:
        r = self.request
        try:
            scope = verify(r.method, r.path, r.query, r.headers, r.body or b"",
                           self.settings["faas_token"])
        except SignatureError as exc:
            raise LambdaError(403, exc.code, exc.message) from None
        self.region = scope["region"]

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise LambdaError(400, "InvalidRequestContentException",
                              f"Could not parse request body into json: {exc}") from None
        if not isinstance(body, dict):
            raise LambdaError(400, "InvalidRequestContentException", "The request body must be a JSON object")
        return body

    def send_json(self, body, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, FaaSError):
            e = from_faas_error(e)
        if isinstance(e, LambdaError):
            if self._finished:
                return
            self.clear()
            self.set_status(e.status)
            self.set_header("x-amzn-ErrorType", e.code)
            self.set_header("Content-Type", "application/json")
            for name, value in e.headers.items():
                self.set_header(name, value)
            self.finish(json.dumps(e.body()))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            code, message = ("UnknownOperationException" if status_code in (404, 405)
                             else "InvalidRequestContentException"), exc.log_message or self._reason
        else:
            code = "ServiceException"
            message = f"internal server error ({type(exc).__name__}: {exc}); see the server log"
        self.set_header("x-amzn-ErrorType", code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(LambdaError(status_code, code, message).body()))


class UnknownOperationHandler(LambdaHandler):
    """A path under a Lambda API date this server does not implement: say so, in Lambda's shape."""

    def _unknown(self, *args) -> None:
        raise LambdaError(404, "UnknownOperationException",
                          f"jupyter_faas does not implement {self.request.method} {self.request.path} "
                          f"of the Lambda API (see the README's 'Lambda API' section for what it does)")

    get = post = put = delete = patch = _unknown
