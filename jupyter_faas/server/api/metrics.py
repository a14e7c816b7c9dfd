"""``/faas/api/metrics``: per-function statistics and per-minute metrics (the panel's)."""

from __future__ import annotations

from .errors import BaseHandler


class FunctionStatsHandler(BaseHandler):
    def get(self):
        monitoring = self.settings["faas_monitoring"]
        self.finish({"functions": monitoring.function_stats(self.service.settings.environments),
                     "prices": monitoring.prices()})


class FunctionVersionsHandler(BaseHandler):
    """Every function's published versions, aliases and invocations by version (the panel's)."""

    def get(self):
        self.finish({"functions": self.settings["faas_monitoring"].versions(self.service.versions)})


class FunctionMetricsHandler(BaseHandler):
    def get(self, name):
        self.service.get_function(name)
        minutes = self.int_arg("minutes", 60, 1, 10**6)
        self.finish(self.settings["faas_monitoring"].metrics(name, minutes))
