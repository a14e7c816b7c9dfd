"""SigV4 on the Lambda API: checked against botocore's own signer, then against a real server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from lambda_fixtures import client

from jupyter_faas.server.compat.sigv4 import CLOCK_SKEW_S, SignatureError, verify


class _Headers(dict):
    """Case-insensitive header lookup (tornado's HTTPHeaders is, the verifier relies on it)."""

    def get(self, key, default=None):
        for k, v in self.items():
            if k.lower() == key.lower():
                return v
        return default


def _signed(secret: str, path: str, query: str = "", body: bytes = b"{}"):
    url = "http://127.0.0.1:9999" + path + (f"?{query}" if query else "")
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"X-Amz-Log-Type": "Tail", "Content-Type": "application/json"})
    auth = SigV4Auth(Credentials("AKIDANY", secret), "lambda", "eu-west-1")
    auth.add_auth(request)
    headers = _Headers(request.headers.items())
    headers["Host"] = "127.0.0.1:9999"
    return headers


@pytest.mark.parametrize("path,query", [
    ("/2015-03-31/functions/demo/invocations", ""),
    ("/2015-03-31/functions/demo%3Aprod/invocations", "Qualifier=%24LATEST"),
    ("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ademo/invocations",
     "b=2&a=1&a=0"),
])
def test_botocores_signature_verifies_and_a_wrong_secret_does_not(path, query):
    headers = _signed("s3cret", path, query)
    scope = verify("POST", path, query, headers, b"{}", "s3cret")
    assert scope == {"access_key_id": "AKIDANY", "region": "eu-west-1", "service": "lambda"}
    with pytest.raises(SignatureError) as info:
        verify("POST", path, query, headers, b"{}", "other")
    assert info.value.code == "InvalidSignatureException"
    with pytest.raises(SignatureError, match="does not match"):
        verify("POST", path, query, headers, b'{"tampered": 1}', "s3cret")


def test_a_signature_outside_the_clock_skew_window_is_refused():
    path = "/2015-03-31/functions/demo/invocations"
    headers = _signed("s3cret", path)  # botocore stamps the current time: the server's clock moves
    for late in (1, -1):
        with pytest.raises(SignatureError, match="Signature expired") as info:
            verify("POST", path, "", headers, b"{}", "s3cret", now=time.time() + late * (CLOCK_SKEW_S + 60))
        assert info.value.code == "InvalidSignatureException"
    verify("POST", path, "", headers, b"{}", "s3cret", now=time.time() + CLOCK_SKEW_S - 60)


def test_unsigned_request_gets_403_unrecognized_client(server):
    request = urllib.request.Request(server.url + "/2015-03-31/functions", method="GET")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert "Missing Authentication Token" in json.loads(info.value.read())["message"]
    # the server's own token is not a Lambda credential
    request.add_header("Authorization", f"token {server.token}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"


def test_boto3_with_a_wrong_secret_gets_invalid_signature(server):
    lam = client(server, secret="not-the-token")
    with pytest.raises(ClientError) as info:
        lam.list_functions()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "Secret Access Key" in info.value.response["Error"]["Message"]
    # any access key id works with the right secret
    assert "Functions" in client(server).list_functions()
