"""jupyter_faas: AWS Lambda's model in Jupyter.

``@faas.function`` ships a function (by value) to a local pool of isolated
execution environments, with Lambda's limits, logs and REPORT; ``%%lambda``
does the same from a notebook cell.
"""

from kernel_workers.init import on_restore

from ._version import __version__
from .client.aws import aws_env, boto3_client
from .client.discovery import connect
from .client.events import DeadLetter, dead_letters, redrive
from .client.queues import Queue, queue, queues
from .client.triggers import Trigger, triggers
from .client.function import RemoteFunction, function
from .client.lookup import lookup
from .client.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from .client.invocation import Invocation, InvocationFuture, Report, invocations
from .errors import (Cancelled, FaaSError, FunctionError, InvalidParameter, InvocationError,
                     InvocationTimeout, OutOfMemory, PayloadTooLarge, ResourceNotFound,
                     ResponseSizeTooLarge, RuntimeExited, SerializationError, ServerError, ServerStopped,
                     Throttled)

__all__ = [
    "__version__",
    "connect", "aws_env", "boto3_client", "function", "lookup", "RemoteFunction", "Invocation", "InvocationFuture", "Report",
    "invocations", "dead_letters", "redrive", "DeadLetter", "triggers", "Trigger", "queue", "queues", "Queue",
    "as_completed", "wait", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
    "FaaSError", "InvocationError", "FunctionError", "InvocationTimeout", "OutOfMemory",
    "RuntimeExited", "Cancelled", "Throttled", "SerializationError", "InvalidParameter",
    "PayloadTooLarge", "ResponseSizeTooLarge", "ResourceNotFound", "ServerError",
    "ServerStopped",
    "on_restore", "load_ipython_extension",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext jupyter_faas``: registers ``%%lambda`` (imported lazily)."""
    from .magics import load
    load(ipython)


def _jupyter_labextension_paths() -> list[dict]:
    """Where the prebuilt side panel is (``jupyter labextension develop`` reads this)."""
    return [{"src": "labextension", "dest": "jupyter-faas"}]


def _jupyter_server_extension_points() -> list[dict]:
    """The jupyter_server extension that gives the side panel the FaaS server (see .panel)."""
    return [{"module": "jupyter_faas.panel"}]
