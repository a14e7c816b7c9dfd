"""Every exception jupyter_faas raises, grouped by what the caller can do about it.

::

    FaaSError                          base of everything this package raises
    ├── InvocationError                the invocation ran (or was admitted) and did not succeed
    │   ├── FunctionError              the handler raised; also an instance of the handler's own
    │   │                              exception type (``except ValueError`` works)
    │   ├── InvocationTimeout          Sandbox.Timedout: "Task timed out after N seconds"
    │   ├── OutOfMemory                Runtime.OutOfMemory: over the function's memory
    │   ├── RuntimeExited              Runtime.ExitError: sys.exit, os._exit, a signal (SIGSEGV)
    │   ├── ResponseSizeTooLarge       Function.ResponseSizeTooLarge: the handler returned, but
    │   │                              its result is over the server's payload limit
    │   ├── Cancelled                  cancelled by the caller (Ctrl-C, ``cancel()``); also a
    │   │                              ``concurrent.futures.CancelledError``
    │   └── ServerStopped              Runtime.ServerStopped: the server stopped while it ran (it
    │                                  may have run partly); also a ServerError
    ├── Throttled                      TooManyRequestsException: over a concurrency limit
    ├── SerializationError             a value could not be pickled or unpickled (names it)
    ├── InvalidParameter               InvalidParameterValueException: a bad option or name
    │   └── PayloadTooLarge            RequestTooLargeException
    ├── ResourceNotFound               ResourceNotFoundException: no such function/invocation
    └── ServerError                    the server could not be reached or failed (ServiceException)

``error_type`` on each class is Lambda's name for it, used on the wire and in
the REST API; :func:`from_wire` turns a wire error back into the right class.
"""

from __future__ import annotations

import concurrent.futures


class FaaSError(Exception):
    """Base class of every error raised by jupyter_faas."""

    error_type = "ServiceException"
    status_code = 500

    def __init__(self, message: str = "", **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls, message, details):
    return cls(message, **details)


class InvocationError(FaaSError):
    """An invocation was accepted but did not succeed. ``request_id`` names it."""

    status_code = 200

    @property
    def request_id(self) -> str | None:
        return self.details.get("request_id")

    @property
    def logs(self) -> list:
        """The last log lines of the invocation, when known."""
        return self.details.get("logs") or []


class FunctionError(InvocationError):
    """The handler raised. ``remote_type`` and ``remote_traceback`` describe it."""

    error_type = "Unhandled"

    @property
    def remote_type(self) -> str:
        return self.details.get("remote_type", "")

    @property
    def remote_traceback(self) -> str:
        return self.details.get("remote_traceback", "")


class InvocationTimeout(InvocationError):
    error_type = "Sandbox.Timedout"


class OutOfMemory(InvocationError):
    error_type = "Runtime.OutOfMemory"


class RuntimeExited(InvocationError):
    error_type = "Runtime.ExitError"


class ResponseSizeTooLarge(InvocationError):
    """The handler returned normally, but its result is over the payload limit; it was dropped.

    Not a :class:`FunctionError`: the handler did not raise.
    """

    error_type = "Function.ResponseSizeTooLarge"


class Cancelled(InvocationError, concurrent.futures.CancelledError):
    """Also a ``concurrent.futures.CancelledError``, what a cancelled future's ``result()`` raises."""

    error_type = "Cancelled"


class Throttled(FaaSError):
    error_type = "TooManyRequestsException"
    status_code = 429


class SerializationError(FaaSError):
    error_type = "SerializationError"
    status_code = 400


class InvalidParameter(FaaSError):
    error_type = "InvalidParameterValueException"
    status_code = 400


class PayloadTooLarge(InvalidParameter):
    error_type = "RequestTooLargeException"
    status_code = 413


class ResourceNotFound(FaaSError):
    error_type = "ResourceNotFoundException"
    status_code = 404


class ServerError(FaaSError):
    error_type = "ServiceException"
    status_code = 500


class ServerStopped(InvocationError, ServerError):
    """The server stopped (or was killed) while the invocation ran: it may have run partly, and
    its end was never seen.  Not the handler's doing; ``request_id`` names the invocation."""

    error_type = "Runtime.ServerStopped"


_BY_TYPE = {cls.error_type: cls for cls in (
    InvocationTimeout, OutOfMemory, RuntimeExited, ResponseSizeTooLarge, Cancelled, Throttled,
    SerializationError, InvalidParameter, PayloadTooLarge, ResourceNotFound, ServerError, ServerStopped)}
_BY_TYPE["InvalidRequestContentException"] = InvalidParameter
_BY_TYPE["Runtime.MarshalError"] = SerializationError
# INIT went over its 10 s limit (jupyter_faas.limits.INIT_TIMEOUT_S)
_BY_TYPE["Runtime.InitTimeout"] = InvocationTimeout
_BY_TYPE["Runtime.UnmarshalError"] = SerializationError
_BY_TYPE["Runtime.ImportModuleError"] = SerializationError


def class_for(error_type: str) -> type:
    """The exception class for a Lambda error type (FunctionError for handler errors)."""
    return _BY_TYPE.get(error_type, FunctionError)
