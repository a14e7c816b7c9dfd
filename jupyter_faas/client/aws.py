"""Point boto3 and the AWS CLI at this user's FaaS server: ``faas.aws_env()``, ``faas.boto3_client()``.

The server serves Lambda's REST API at its URL; a request is signed (SigV4) with the
server's token as the secret access key, and any access key id.  boto3 is optional: only
:func:`boto3_client` needs it.
"""

from __future__ import annotations

#: the access key id handed out (any id works: only the secret, the token, is checked)
ACCESS_KEY_ID = "jupyter-faas"
DEFAULT_REGION = "us-east-1"


def aws_env(region: str = DEFAULT_REGION) -> dict:
    """The environment variables that point boto3 and the AWS CLI at the FaaS server
    (started if none runs): ``AWS_ENDPOINT_URL_LAMBDA``, the credentials and the region."""
    from .discovery import default_connection
    conn = default_connection()
    return {"AWS_ENDPOINT_URL_LAMBDA": conn.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": conn.token, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}


def boto3_client(region: str = DEFAULT_REGION, **kwargs):
    """A boto3 Lambda client for the FaaS server; ``kwargs`` go to ``boto3.client`` (``config=``...)."""
    try:
        import boto3
    except ImportError:
        from ..errors import FaaSError
        raise FaaSError("faas.boto3_client() needs boto3, which is not installed: "
                        "pip install 'jupyter_faas[aws]' (or pip install boto3)") from None
    env = aws_env(region)
    options = {"endpoint_url": env["AWS_ENDPOINT_URL_LAMBDA"], "region_name": region,
               "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
               "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    options.update(kwargs)
    return boto3.client("lambda", **options)
