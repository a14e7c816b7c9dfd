"""The Lambda-style ``context`` object a handler receives.

Attribute names and types follow awslambdaric's ``LambdaContext`` (so handlers
written for AWS run unchanged), including ``memory_limit_in_mb`` being a string.
"""

from __future__ import annotations

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
