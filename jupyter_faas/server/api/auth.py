"""Authentication for every endpoint: the server's token, on REST and websockets alike.

``Authorization: token <T>`` or ``Bearer <T>``, or ``?token=<T>`` (browsers cannot set
headers on a websocket).  Compared in constant time.  SigV4 (the Lambda API, whose
secret is this token) will be verified here too.
"""

from __future__ import annotations

import hmac


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
