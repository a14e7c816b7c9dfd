"""The HTTP layer: tornado handlers only, one module per resource (like jupyter_server's services).

Handlers parse and authorise (:mod:`.auth`), call the engine's service, and serialise;
errors are raised and rendered in one place (:mod:`.errors`).  The REST API is written
down in ``jupyter_faas/server/openapi.yaml``.  This is the only layer that imports
``tornado.web``.
"""

from __future__ import annotations

from tornado import web

from .async_events import (AttemptsHandler, DeadLettersHandler, EventConfigHandler, EventsHandler,
                           RedriveHandler)
from .events import EventSocket
from .function_urls import FunctionUrlHandler
from .functions import FunctionHandler, FunctionLogsHandler, FunctionsHandler, InvokeHandler
from .invocations import (InvocationCancelHandler, InvocationHandler, InvocationLogsHandler,
                          InvocationResultHandler, InvocationsHandler)
from .invocations_ws import InvocationSocket
from .metrics import FunctionMetricsHandler, FunctionStatsHandler, FunctionVersionsHandler
from .provisioned import ProvisionedHandler
from .queues import QueueHandler, QueueMessagesHandler, QueueRedriveHandler, QueuesHandler
from .status import ShutdownHandler, StatusHandler
from .triggers import TriggerHandler, TriggersHandler


def routes() -> list:
    p = "/faas/api"
    name = r"(?P<name>[^/]+)"
    rid = r"(?P<request_id>[^/]+)"
    return [
        (rf"{p}/status", StatusHandler),
        (rf"{p}/functions", FunctionsHandler),
        (rf"{p}/functions/{name}", FunctionHandler),
        (rf"{p}/functions/{name}/logs", FunctionLogsHandler),
        (rf"{p}/functions/{name}/invocations", InvokeHandler),
        (rf"{p}/invocations", InvocationsHandler),
        (rf"{p}/invocations/{rid}", InvocationHandler),
        (rf"{p}/invocations/{rid}/result", InvocationResultHandler),
        (rf"{p}/invocations/{rid}/logs", InvocationLogsHandler),
        (rf"{p}/invocations/{rid}/cancel", InvocationCancelHandler),
        (rf"{p}/metrics/functions", FunctionStatsHandler),
        (rf"{p}/metrics/functions/{name}", FunctionMetricsHandler),
        (rf"{p}/metrics/versions", FunctionVersionsHandler),
        (rf"{p}/functions/{name}/events", EventsHandler),
        (rf"{p}/functions/{name}/event-config", EventConfigHandler),
        (rf"{p}/functions/{name}/provisioned-concurrency", ProvisionedHandler),
        (rf"{p}/invocations/{rid}/attempts", AttemptsHandler),
        (rf"{p}/dead-letters", DeadLettersHandler),
        (rf"{p}/dead-letters/redrive", RedriveHandler),
        (rf"{p}/triggers", TriggersHandler),
        (rf"{p}/triggers/(?P<trigger_id>[^/]+)", TriggerHandler),
        (rf"{p}/queues", QueuesHandler),
        (rf"{p}/queues/{name}", QueueHandler),
        (rf"{p}/queues/{name}/messages", QueueMessagesHandler),
        (rf"{p}/queues/{name}/redrive", QueueRedriveHandler),
        (rf"{p}/shutdown", ShutdownHandler),
        (rf"{p}/ws", InvocationSocket),
        (rf"{p}/events", EventSocket),
    ]


def url_routes() -> list:
    """Function URLs: the user's endpoints, beside (not in) the REST API."""
    return [(r"/url/(?P<name>[^/]+)(?P<path>/.*)?", FunctionUrlHandler)]


def make_app(extra_routes: list = (), **settings) -> web.Application:
    """The tornado application of :func:`routes` and :func:`url_routes` (then ``extra_routes``: the
    Lambda API's, which ``app.py`` passes in, so this layer imports no other room); ``settings``
    are the handlers' (``faas_service``, ``faas_token``, ``faas_monitoring``, ``faas_instance``,
    ``faas_direct``, ``faas_shutdown``, ``faas_triggers``, and the extra routes' own)."""
    return web.Application(routes() + url_routes() + list(extra_routes), **settings)
