"""Authentication for every endpoint: the server's token, on REST and websockets alike.

``Authorization: token <T>`` or ``Bearer <T>``, or ``?token=<T>`` (browsers cannot set
headers on a websocket).  Compared in constant time.  SigV4 (the Lambda API, whose
secret is this token) will be verified here too.
"""

from __future__ import annotations

import hmac

from tornado import websocket


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
