"""SigV4 for Lambda's REST API, shared by the server (which verifies) and the client (which signs).

Pure functions on hashlib and hmac (reference/lambda.md §1.4): the canonical request (the
path's segments encoded again, as non-S3 services sign them), the signing key, and
:func:`sign`, the headers that sign a request with the FaaS server's token as the secret
access key.  The server's checks (clock skew, scope, what to answer) are in
``server/compat/sigv4.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_request(method: str, raw_path: str, raw_query: str, headers, signed: list[str],
                      body: bytes) -> str:
    """Lambda's canonical request.  Non-S3 services encode the (already encoded) path again:
    ``/functions/demo%3Aprod`` is signed as ``/functions/demo%253Aprod``."""
    path = "/".join(quote(segment, safe="-_.~") for segment in (raw_path or "/").split("/"))
    pairs = sorted((_encode(k), _encode(v)) for k, v in parse_qsl(raw_query, keep_blank_values=True))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    lines = []
    for name in signed:
        values = headers.get_list(name) if hasattr(headers, "get_list") else [headers.get(name, "")]
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "\n".join([method.upper(), path, query, "".join(lines), ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(method: str, url: str, body: bytes, secret: str, access_key_id: str = "jupyter-faas",
         region: str = "us-east-1", now: float | None = None) -> dict:
    """The headers (``Host``, ``X-Amz-Date``, ``Authorization``) that sign a request to ``url``
    (its path percent-encoded as it will be sent) for the ``lambda`` service."""
    parts = urlsplit(url)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    headers = {"host": parts.netloc, "x-amz-date": amz_date}
    signed = sorted(headers)
    canonical = canonical_request(method, parts.path, parts.query, headers, signed, body)
    scope = f"{amz_date[:8]}/{region}/lambda/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret, amz_date[:8], region, "lambda"), string_to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return {"Host": parts.netloc, "X-Amz-Date": amz_date,
            "Authorization": f"{ALGORITHM} Credential={access_key_id}/{scope}, "
                             f"SignedHeaders={';'.join(signed)}, Signature={signature}"}
