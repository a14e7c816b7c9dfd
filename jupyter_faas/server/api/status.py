"""``/faas/api/status`` and ``/faas/api/shutdown``: the server itself."""

from __future__ import annotations

from ... import __version__
from .errors import BaseHandler


class StatusHandler(BaseHandler):
    def get(self):
        files = self.service.files
        self.finish({"version": __version__, "max_payload_bytes": self.service.max_payload_bytes,
                     "instance": self.settings.get("faas_instance"),
                     "direct_socket": self.settings.get("faas_direct"),
                     **({"buffers": files.info()} if files is not None else {}),
                     **self.service.registry.stats(), **self.service.stats()})


class ShutdownHandler(BaseHandler):
    def post(self):
        self.finish({"stopping": True})
        self.settings["faas_shutdown"]()
