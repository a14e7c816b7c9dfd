"""SigV4 verification of Lambda API requests (reference/lambda.md §1.4), with hashlib and hmac.

The secret access key is the server's token; the access key id is free (any id, its
12 leading digits are not an account).  A request is accepted when its signature is
the one the token gives, and its ``X-Amz-Date`` is within :data:`CLOCK_SKEW_S` of now.

Why not botocore's signer: botocore is an optional dependency (the server runs without
it), and its ``SigV4Auth`` signs *outgoing* requests: it picks the headers to sign
itself and stamps the current time, so reusing it to check a received request means
rebuilding a request and overriding both.  The algorithm is 40 lines; the tests check
it against botocore's signer and against every request real boto3 and the AWS CLI send.

The canonical request and the signing key are shared with the client's signer
(:mod:`jupyter_faas.sigv4`).  Pure functions, no tornado: the handler passes the raw wire path (percent-encoded as
sent), the raw query string, the headers and the body.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time

from ...sigv4 import ALGORITHM, canonical_request, signing_key  # noqa: F401 - shared with the client
#: seconds a request's X-Amz-Date may be off the server's clock (AWS allows 15 minutes)
CLOCK_SKEW_S = 15 * 60
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")


class SignatureError(Exception):
    """A request that is not signed with the server's token: ``code`` is Lambda's error type."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def verify(method: str, raw_path: str, raw_query: str, headers, body: bytes, secret: str,
           now: float | None = None) -> dict:
    """Check a request's SigV4 signature against ``secret``; returns its credential scope
    (``access_key_id``, ``region``, ``service``).  Raises :class:`SignatureError`."""
    auth = headers.get("Authorization", "")
    if not auth:
        raise SignatureError("UnrecognizedClientException",
                             "Missing Authentication Token: sign the request with SigV4 (boto3 and the "
                             "AWS CLI do; set the credentials `jupyter faas aws-env` prints)")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise SignatureError("UnrecognizedClientException",
                             "The Authorization header is not an AWS4-HMAC-SHA256 signature")
    parts = m["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("UnrecognizedClientException",
                             f"Credential should be scoped to a valid region, not {m['credential']!r}")
    access_key, date, region, service, _ = parts
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise SignatureError("InvalidSignatureException",
                             f"X-Amz-Date {amz_date!r} is missing or not in the form 20260101T000000Z") from None
    if not amz_date.startswith(date):
        raise SignatureError("InvalidSignatureException",
                             f"Credential date {date} does not match X-Amz-Date {amz_date}")
    now = time.time() if now is None else now
    if abs(now - signed_at) > CLOCK_SKEW_S:
        server = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        raise SignatureError("InvalidSignatureException",
                             f"Signature expired: {amz_date} is not within {CLOCK_SKEW_S // 60} minutes "
                             f"of the server's time {server}; check this machine's clock")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise SignatureError("InvalidSignatureException", "SignedHeaders must include host")
    canonical = canonical_request(method, raw_path, raw_query, headers, signed, body)
    string_to_sign = "\n".join([ALGORITHM, amz_date, f"{date}/{region}/{service}/aws4_request",
                                hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region, service), string_to_sign.encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["signature"]):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you "
                             "provided. Check your AWS Secret Access Key (the FaaS server's token: "
                             "`jupyter faas aws-env` prints it) and signing method.")
    return {"access_key_id": access_key, "region": region, "service": service}
