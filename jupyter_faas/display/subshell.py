"""Keep a widget's buttons live while its cell blocks the kernel's main thread.

A blocking ``f.map(...)`` holds the main thread, and the kernel handles comm
messages (button clicks) there, so a Cancel button would only act after the map
ended.  ipykernel 7 runs *subshells* — shells on their own threads — and asks
each comm which subshell should handle its messages (``_reply_subshell_for``).
We create one subshell per kernel and route our widgets' comms to it, so a click
runs its handler at once.  On an older kernel this does nothing and the buttons
act when the cell ends (Ctrl-C / the stop button still cancel at once).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading

log = logging.getLogger("jupyter_faas.client")

_lock = threading.Lock()
_subshell_id: str | None = None
_unsupported = False


def _create_subshell() -> str | None:
    global _subshell_id, _unsupported
    with _lock:
        if _subshell_id is not None or _unsupported:
            return _subshell_id
        try:
            from IPython import get_ipython
            kernel = get_ipython().kernel
            channel = getattr(kernel, "shell_channel_thread", None)
            if channel is None or not getattr(kernel, "_supports_kernel_subshells", False):
                _unsupported = True
                return None
            manager = channel.manager  # created at kernel start, in the parent thread
            made: concurrent.futures.Future = concurrent.futures.Future()

            def create():  # subshells are made on the shell channel thread
                try:
                    made.set_result(manager._create_subshell())
                except BaseException as exc:  # noqa: BLE001
                    made.set_exception(exc)
            channel.io_loop.add_callback(create)
            _subshell_id = made.result(timeout=10)
        except Exception:  # noqa: BLE001 - buttons then act when the cell ends
            log.debug("no kernel subshell for widget events", exc_info=True)
            _unsupported = True
        return _subshell_id


def route_off_main_thread(widget) -> bool:
    """Have ``widget``'s messages from the frontend handled on a kernel subshell thread."""
    subshell = _create_subshell()
    comm = getattr(widget, "comm", None)
    if subshell is None or comm is None or not hasattr(comm, "_reply_subshell_for"):
        return False
    comm._reply_subshell_for = lambda data, default: subshell
    return True
