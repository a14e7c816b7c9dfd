"""Turn an invocation's error (as the server reports it) into the exception to raise.

A handler's own exception comes back as an instance of *both* its type and
:class:`~jupyter_faas.FunctionError` (a subclass made once per type; a ``KeyboardInterrupt`` or
other ``BaseException`` that is no ``Exception``: a plain ``FunctionError`` naming it), with its
attributes (whatever its ``__init__`` takes: see :mod:`kernel_workers.exceptions`)
and the remote traceback as ``__cause__``, the way ``concurrent.futures`` does it.
When its class cannot be loaded here, a plain ``FunctionError`` names the type.
"""

from __future__ import annotations

import cloudpickle

from kernel_workers import exceptions

from .. import errors

_DUAL: dict[type, type] = {}


class RemoteTraceback(Exception):
    """Carries the traceback text from the execution environment."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def _dual_class(remote_type: type) -> type | None:
    cls = _DUAL.get(remote_type)
    if cls is None:
        try:
            cls = type(remote_type.__name__, (remote_type, errors.FunctionError), {
                "__module__": remote_type.__module__,
                "__qualname__": remote_type.__qualname__,
                "__str__": errors.FaaSError.__str__,
                # Pickled again (sent on), it is the handler's own type once more.
                "__reduce__": lambda self: (exceptions.rebuild, (remote_type, self.args, {
                    k: v for k, v in self.__dict__.items() if k not in ("message", "details")})),
            })
        except TypeError:  # layout conflict with an exotic exception type
            return None
        _DUAL[remote_type] = cls
    return cls


def rebuild(error: dict, body: bytes, request_id: str, function: str, logs=None) -> Exception:
    error = error or {}
    error_type = error.get("errorType", "")
    message = error.get("errorMessage", "")
    stage = error.get("stage")
    trace = "".join(error.get("stackTrace") or [])
    details = {"request_id": request_id, "remote_type": error_type, "remote_traceback": trace,
               "logs": logs or [], "error": error}
    if stage in ("unpickle", "pickle", "init") or error_type == "Runtime.MarshalError":
        what = {"unpickle": "the arguments could not be unpickled in the execution environment",
                "pickle": "the result could not be pickled in the execution environment",
                "init": "the function's code could not be loaded in the execution environment"}.get(
                    stage, "the result is not JSON-serialisable")
        hint = {"init": " Install the missing module where the server runs, or define what it "
                        "needs in the notebook or a local module (shipped by value)."}.get(
                    stage, " Use plain data (numbers, strings, lists, dicts, arrays).")
        exc = errors.SerializationError(
            f"{function} (request {request_id}): {what}: {error_type}: {message}.{hint}", **details)
    else:
        # INIT code that raised is the user's error, whatever Lambda calls it
        cls = errors.FunctionError if stage == "init_code" else errors.class_for(error_type)
        exc = None
        if cls is errors.FunctionError and body:
            try:
                original = cloudpickle.loads(body)
            except BaseException:  # noqa: BLE001 - its class may not exist here
                original = None
            # not a KeyboardInterrupt (or any BaseException that is no Exception): raised here it
            # would read as the user's own Ctrl-C and pass ``except Exception``; a FunctionError
            # naming it instead
            if isinstance(original, Exception):
                dual = _dual_class(type(original))
                if dual is not None:
                    exc = exceptions.new_instance(dual, original.args)
                    exc.__dict__.update(getattr(original, "__dict__", {}))
                    exc.message = str(original)
                    exc.details = details
        if exc is None:
            if cls is errors.FunctionError:
                message = f"{error_type}: {message}"
            exc = cls(message, **details)
    if stage == "init_code":
        exc.add_note(f"{function}: INIT failed ({error_type}): the function's INIT code (its "
                     f"%%lambda cell, or init=) raised in the execution environment")
    if trace:
        exc.__cause__ = RemoteTraceback(trace)
    return exc
