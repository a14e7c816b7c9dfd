"""The jupyter_server extension behind the JupyterLab side panel.

The panel's browser code talks only to the Jupyter server it was loaded from, under
Jupyter's own auth and XSRF protection; this extension finds the FaaS server the
kernels use (the client's discovery: env vars, runtime file, else start one) and
forwards the panel's requests and the event feed to it with the FaaS token, which
therefore never reaches the browser.
"""

from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "jupyter_faas.panel"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from .handlers import setup_handlers
    setup_handlers(serverapp)
