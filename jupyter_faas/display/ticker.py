"""One daemon thread that redraws every live view a few times a second."""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("jupyter_faas.client")

INTERVAL_S = 0.25

_lock = threading.Lock()
_views: list = []
_thread: threading.Thread | None = None


def add(view) -> None:
    global _thread
    with _lock:
        _views.append(view)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="jupyter_faas-display", daemon=True)
            _thread.start()


def remove(view) -> None:
    with _lock:
        if view in _views:
            _views.remove(view)


def _run() -> None:
    while True:
        time.sleep(INTERVAL_S)
        with _lock:
            views = list(_views)
        for view in views:
            try:
                view.redraw()
            except Exception:  # noqa: BLE001 - a broken view must not stop the others
                log.exception("a live view failed to redraw; dropping it")
                remove(view)


def _after_fork_in_child() -> None:
    global _lock, _thread
    # The parent's display thread may have held the lock at the fork; the child has no such
    # thread, and the parent's views are the parent's to draw.
    _lock, _thread = threading.Lock(), None
    _views.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
