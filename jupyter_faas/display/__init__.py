"""Live views of invocations: a widget in a notebook, plain text anywhere else.

A view watches futures; it never drives them.  The IO thread feeds views log
lines as they arrive (cheap appends into bounded buffers); one display thread
redraws every live view a few times a second, so a function printing 200,000
lines costs the frontend a handful of small updates, not 200,000.

``call_view`` is for one call (it appears only if the call outlives
``CALL_VIEW_AFTER_S`` or ``show=True``); ``map_view`` is the progress view of a
``map``/``starmap``/``imap``.  Which kind — widget or text — is decided once per
view by :func:`widget_frontend`.
"""

from __future__ import annotations

from .views import CALL_VIEW_AFTER_S, MapView, CallView, widget_frontend

__all__ = ["CALL_VIEW_AFTER_S", "CallView", "MapView", "widget_frontend"]
