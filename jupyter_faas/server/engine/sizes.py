"""How big an invocation's arguments and result may be: two limits, for two ways bytes travel.

The bytes inside messages (the pickle, and every buffer of a client that does not share
the server's buffer directory) are held to ``max_payload_bytes``, Lambda's 6 MB.  The
out-of-band buffers of a pickle (numpy arrays and the like) that a client on the
server's machine passes through a file are held to ``max_buffer_bytes``, by default
(None) the function's memory, which is what its environment can hold anyway: a file
costs the server nothing, so a caller with a big array raises the function's memory,
not a server option.  The same two limits hold for results.  No I/O here.
"""

from __future__ import annotations

from ... import limits
from ...errors import PayloadTooLarge

MB = 1024 * 1024


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


class SizeLimits:
    def __init__(self, max_payload_bytes: int, max_buffer_bytes: int | None = None):
        self.max_payload_bytes = max_payload_bytes
        self.max_buffer_bytes = max_buffer_bytes

    def buffer_limit(self, function: dict) -> tuple[int, str]:
        """The most bytes of buffers in a file an invocation of ``function`` may pass or
        return, and how to raise it (for the error)."""
        if self.max_buffer_bytes is not None:
            return self.max_buffer_bytes, "raise --FaaSServer.max_buffer_mb on the server"
        return (function["memory"] * MB,
                f"give {function['name']} more memory (memory= in @faas.function or %%lambda, "
                f"up to {limits.MEMORY_MAX_MB} MB: an environment must hold what it is passed)")

    def check_message(self, size: int) -> None:
        """Raise PayloadTooLarge for a payload of ``size`` bytes inside its message over the limit."""
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"the payload is {size} bytes inside the message; the limit is "
                f"{self.max_payload_bytes} bytes (Lambda's). Pass less data per call (e.g. a path "
                f"instead of the data), or raise the limit with --FaaSServer.max_payload_mb=... "
                f"(large arrays from a client on the server's machine travel in files instead)")

    def check_buffers(self, function: dict, buffer_bytes: int) -> None:
        """Raise PayloadTooLarge for arguments whose buffers in a file are over the limit."""
        limit, remedy = self.buffer_limit(function)
        if buffer_bytes > limit:
            raise PayloadTooLarge(
                f"the arguments of {function['name']}() hold {_mb(buffer_bytes)} of arrays "
                f"(out-of-band buffers, passed in a file); an invocation of {function['name']} "
                f"(memory={function['memory']} MB) takes at most {_mb(limit)} of them. "
                f"Nothing ran. Pass less data per call (e.g. a path to the data), or {remedy}.")

    def result_error(self, function: dict, size: int, buffer_bytes: int) -> dict | None:
        """The error of a result over a limit (its pickle's bytes, or its buffers' in a file), or None."""
        if size > self.max_payload_bytes:
            return {"errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": f"the result is {size} bytes; the limit is {self.max_payload_bytes} "
                                    f"bytes inside a message (Lambda's). Return less data (e.g. write "
                                    f"it to a file and return the path), or raise "
                                    f"--FaaSServer.max_payload_mb"}
        limit, remedy = self.buffer_limit(function)
        if buffer_bytes > limit:
            return {"errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": f"the result holds {_mb(buffer_bytes)} of arrays (out-of-band "
                                    f"buffers, passed in a file); an invocation of {function['name']} "
                                    f"(memory={function['memory']} MB) may return at most {_mb(limit)} "
                                    f"of them. Return less data (e.g. write it to a file and return "
                                    f"the path), or {remedy}."}
        return None
