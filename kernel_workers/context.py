"""The Lambda-style ``context`` object a handler receives, and when it receives one.

Attribute names and types follow awslambdaric's ``LambdaContext`` (so handlers
written for AWS run unchanged), including ``memory_limit_in_mb`` being a string.

A context is passed only where Lambda would pass it: the call is Lambda-shaped
(one positional argument, the event, and no keyword arguments) and the handler's
second parameter is named ``context``.  ``render(template, context)`` called with
two arguments gets exactly them.  The client's ``.local()`` follows the same rule
(:func:`call_with_context`).
"""

from __future__ import annotations

import inspect
import time


class LambdaContext:
    def __init__(self, request_id: str, function_name: str, function_version: str,
                 memory_mb: int, deadline_ms: int, log_stream_name: str = ""):
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = str(memory_mb)
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.client_context = None
        self.identity = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, message: str) -> None:
        import sys
        sys.stdout.write(message if message.endswith("\n") else message + "\n")

    def __repr__(self) -> str:
        return (f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
                f"function_name={self.function_name!r}, function_version={self.function_version!r})")


def context_parameter(fn) -> str | None:
    """How ``fn`` takes a context: ``"positional"``, ``"keyword"`` (keyword-only) or None.

    Only a *second* parameter named ``context`` counts.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(params) < 2 or params[1].name != "context" or params[0].kind in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.VAR_KEYWORD):
        return None
    kind = params[1].kind
    if kind == inspect.Parameter.KEYWORD_ONLY:
        return "keyword"
    if kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return "positional"
    return None


def call_with_context(fn, how: str | None, args: tuple, kwargs: dict, make_context):
    """``fn(*args, **kwargs)``, with ``make_context()`` added when the call is Lambda-shaped."""
    if how is None or len(args) != 1 or kwargs:
        return fn(*args, **kwargs)
    if how == "keyword":
        return fn(args[0], context=make_context())
    return fn(args[0], make_context())
