"""Helpers for the Lambda API tests: zips built in memory, and boto3 clients for a test server."""

from __future__ import annotations

import io
import zipfile

ROLE = "arn:aws:iam::000000000000:role/any"


def make_zip(files: dict, symlinks: dict | None = None) -> bytes:
    """A zip of ``{name: text}`` (and ``{name: target}`` symlink entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, target)
    return buf.getvalue()


def client(server, secret: str | None = None, read_timeout: float = 30, **kwargs):
    """A boto3 Lambda client for ``server`` that never retries (a retry would hide an error)."""
    import boto3
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="AKIDTEST", aws_secret_access_key=secret or server.token,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout),
                        **kwargs)


def create(lam, name: str, files: dict, handler: str = "app.handler", **kwargs) -> dict:
    return lam.create_function(FunctionName=name, Runtime="python3.11", Handler=handler, Role=ROLE,
                               Code={"ZipFile": make_zip(files)}, **kwargs)
