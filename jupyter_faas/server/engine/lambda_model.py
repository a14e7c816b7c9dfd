"""Lambda's model on the :class:`~.service.Service`: published versions and aliases
(:mod:`.versions`), layers (:mod:`.layers`) and per-qualifier settings
(:mod:`.function_settings`), and :meth:`LambdaModel.get_function`, which takes an engine
version or a Lambda qualifier.  A mixin, so the service's module stays about invocations."""

from __future__ import annotations

from functools import cached_property

from .. import model
from .function_settings import FunctionSettings
from .layers import Layers
from .versions import Versions


class LambdaModel:
    """Mixed into :class:`~.service.Service` (``self.store``, ``self.registry``, ``self.backend``)."""

    store = registry = backend = None

    @cached_property
    def versions(self) -> Versions:
        return Versions(self.store, self.registry)

    @cached_property
    def settings(self) -> FunctionSettings:
        return FunctionSettings(self.store, self.versions, self.registry, self.backend,
                                code_for=self.environment_code, slots=getattr(self, "slots", None))

    @cached_property
    def layers(self) -> Layers:
        return Layers(self.store)

    def environment_code(self, function: dict) -> bytes:
        """The code an environment of ``function`` loads (see :meth:`.Layers.environment_code`)."""
        return self.layers.environment_code(function, self.registry.code(function))

    def get_function(self, name: str, version: int | str | None = None) -> model.FunctionVersion:
        """An engine version (an int; None: the latest), or what a Lambda qualifier names (a str:
        ``"$LATEST"``, a published ``"3"`` or an alias, picked by its weights per call; the dict
        then has ``lambda_version``).  Raises ResourceNotFound."""
        if isinstance(version, str):
            return self.versions.resolve(name, version)
        return self.registry.get(name, version)
