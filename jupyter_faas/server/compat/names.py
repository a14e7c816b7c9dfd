"""Lambda's function names and ARNs: every form a caller may give, and the ARNs this API answers with.

A caller names a function as ``my-fn``, ``my-fn:qualifier``, ``123456789012:function:my-fn``
or ``arn:aws:lambda:us-east-1:123456789012:function:my-fn[:qualifier]``, with the qualifier
(``$LATEST``, a version number or an alias) also allowed in ``?Qualifier=``.  Pure functions.
"""

from __future__ import annotations

import re
import time

from .errors import LambdaError

#: the account every ARN names (LocalStack's default: the access key id is free here)
ACCOUNT_ID = "000000000000"
LATEST = "$LATEST"
_NAME = r"[a-zA-Z0-9-_]{1,64}"
_QUALIFIER = r"(\$LATEST|[a-zA-Z0-9-_]{1,128})"
_FORMS = re.compile(
    rf"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):function:"
    rf"|(?P<partial>\d{{12}}):function:)?(?P<name>{_NAME})(?::(?P<qualifier>{_QUALIFIER}))?$")


def parse(function_name: str, qualifier: str | None = None) -> tuple[str, str | None]:
    """``(name, qualifier or None)`` of any of Lambda's name forms; raises 400 for a bad one or
    for a qualifier in the name that disagrees with ``?Qualifier``."""
    m = _FORMS.match(function_name or "")
    if not m:
        raise LambdaError.invalid(
            f"1 validation error detected: Value '{function_name}' at 'functionName' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: "
            f"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}}:)?"
            f"(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
    named = m["qualifier"]
    if qualifier is not None and qualifier != "":
        if not re.fullmatch(_QUALIFIER, qualifier):
            raise LambdaError.invalid(f"Invalid Qualifier: {qualifier!r}")
        if named is not None and named != qualifier:
            raise LambdaError.invalid("The derived qualifier from the function name does not match "
                                      "the specified qualifier.")
        named = qualifier
    return m["name"], named


def function_arn(region: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def last_modified(ts: float) -> str:
    """Lambda's ``LastModified``: ``2020-04-10T19:06:32.563+0000``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}+0000"
