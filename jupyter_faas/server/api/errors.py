"""One renderer for every error body, and the base handler that uses it.

Errors are raised as :class:`~jupyter_faas.errors.FaaSError` subclasses and rendered
here the way Lambda renders them: the status code, an ``x-amzn-ErrorType`` header and
``{"Type": "User"|"Service", "errorType": ..., "message": ...}``.  Anything else is a
500 that names the exception and points at the server log.
"""

from __future__ import annotations

import json

from tornado import web

from ...errors import FaaSError, InvalidParameter, ServerError
from .auth import token_matches


def error_body(status_code: int, error_type: str, message: str) -> dict:
    """The JSON body of an error response (Lambda's shape)."""
    return {"Type": "User" if status_code < 500 else "Service", "errorType": error_type, "message": message}


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
            self.finish(error_body(403, "AccessDeniedException",
                                   "a valid token is required: send 'Authorization: token <token>' "
                                   "(see the server's runtime file or JUPYTER_FAAS_TOKEN)"))

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
        self.finish(error_body(status_code, error_type, message))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, FaaSError):
            self.send_error(e.status_code if e.status_code >= 400 else 400,
                            exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


