"""The base of the server's websockets: the token, as on every REST handler, and errors in
the same JSON shape (a request that is not a websocket upgrade gets Lambda's error body,
not tornado's HTML page)."""

from __future__ import annotations

from tornado import websocket

from .auth import token_matches
from .errors import error_body


class TokenSocket(websocket.WebSocketHandler):
    """A websocket that, like every REST handler, admits only the server's token."""

    def check_xsrf_cookie(self) -> None:
        pass  # token auth only: no cookies are ever issued, so there is nothing to forge

    def check_origin(self, origin: str) -> bool:
        return True  # the token, not the origin, authenticates

    async def get(self, *args, **kwargs):
        if not token_matches(self.request, self.settings["faas_token"]):
            self.set_status(403)
            self.finish({"errorType": "AccessDeniedException", "message": "a valid token is required"})
            return
        await super().get(*args, **kwargs)

    def write_error(self, status_code: int, **kwargs) -> None:
        error_type = "InvalidRequest" if status_code < 500 else "ServiceException"
        self.set_header("x-amzn-ErrorType", error_type)
        self.set_header("Content-Type", "application/json")
        message = self._reason if status_code != 405 else (
            f"{self.request.method} is not allowed here: this path is a websocket (GET with an upgrade)")
        self.finish(error_body(status_code, error_type, message))
