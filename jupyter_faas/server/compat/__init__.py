"""Lambda's REST API on the FaaS server, for boto3 and the AWS CLI (the ``compat`` room).

Requests are SigV4-signed with the server's token as the secret access key
(:mod:`.sigv4`); :mod:`.handlers` parse them, :mod:`.lambda_api` validates and maps them
onto the engine's :class:`~..engine.Service` (the same submit path, store, limits, logs
and REPORT as a notebook call), and :mod:`.errors` renders Lambda's error shapes.  Zip
packages are unpacked by :mod:`.packages`; an environment imports their handler with
:mod:`kernel_workers.lambda_handler`.  Like ``api/``, this layer imports tornado.web; it
calls the engine only (never the store or a backend).
"""

from __future__ import annotations

from .errors import UnknownOperationHandler
from .handlers import (AccountSettingsHandler, CodeHandler, ConcurrencyHandler, ConfigurationHandler,
                       FunctionHandler, FunctionsHandler, InvokeHandler)
from .lambda_api import LambdaAPI
from .layers import LayersHandler, LayerVersionHandler, LayerVersionsHandler
from .packages import Packages
from .settings import EventInvokeConfigHandler, EventInvokeConfigListHandler, ProvisionedConcurrencyHandler
from .versions import AliasesHandler, AliasHandler, VersionsHandler

__all__ = ["LambdaAPI", "Packages", "routes"]


def routes() -> list:
    """The Lambda API's routes; their handlers need ``faas_lambda`` (a :class:`LambdaAPI`),
    ``faas_service`` and ``faas_token`` in the application's settings."""
    fn = r"/2015-03-31/functions"
    name = r"(?P<name>[^/]+)"
    return [
        (fn + r"/?", FunctionsHandler),
        (rf"{fn}/{name}/?", FunctionHandler),
        (rf"{fn}/{name}/configuration", ConfigurationHandler),
        (rf"{fn}/{name}/code", CodeHandler),
        (rf"{fn}/{name}/invocations", InvokeHandler),
        (rf"{fn}/{name}/versions/?", VersionsHandler),
        (rf"{fn}/{name}/aliases/?", AliasesHandler),
        (rf"{fn}/{name}/aliases/(?P<alias>[^/]+)", AliasHandler),
        (rf"/(?:2017-10-31|2019-09-30)/functions/{name}/concurrency", ConcurrencyHandler),
        (rf"/2019-09-25/functions/{name}/event-invoke-config/list", EventInvokeConfigListHandler),
        (rf"/2019-09-25/functions/{name}/event-invoke-config", EventInvokeConfigHandler),
        (rf"/2019-09-30/functions/{name}/provisioned-concurrency", ProvisionedConcurrencyHandler),
        (r"/2018-10-31/layers/?", LayersHandler),
        (r"/2018-10-31/layers/(?P<name>[^/]+)/versions/?", LayerVersionsHandler),
        (r"/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<number>[^/]+)", LayerVersionHandler),
        (r"/2016-08-19/account-settings/?", AccountSettingsHandler),
        (r"/20\d\d-\d\d-\d\d/.*", UnknownOperationHandler),
    ]
