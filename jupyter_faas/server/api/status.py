"""``/faas/api/status`` and ``/faas/api/shutdown``: the server itself."""

from __future__ import annotations

import os
import time

from ... import __version__
from .errors import BaseHandler

#: when this process started serving (the module is imported once, at start)
_STARTED = time.time()


class StatusHandler(BaseHandler):
    def get(self):
        files = self.service.files
        self.finish({"version": __version__, "pid": os.getpid(),
                     "uptime_s": round(time.time() - _STARTED, 1),
                     "max_payload_bytes": self.service.max_payload_bytes,
                     "instance": self.settings.get("faas_instance"),
                     "direct_socket": self.settings.get("faas_direct"),
                     **({"buffers": files.info()} if files is not None else {}),
                     **self.service.registry.stats(), **self.service.stats(),
                     # per function and qualifier: requested, allocated (up), in_use, status
                     "provisioned": self.service.settings.summary()})


class ShutdownHandler(BaseHandler):
    def post(self):
        self.finish({"stopping": True})
        self.settings["faas_shutdown"]()
