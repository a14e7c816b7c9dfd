"""The triggers room: what makes functions run without a caller (schedules now; function URLs,
file events and queue pollers to come).  Triggers are rows in the store, reconciled when the
server starts, listed until deleted; each firing is an Event invocation through the engine's
async queue (``AsyncService.invoke_async_many``).  This room calls the engine only.
"""

from .manager import KINDS, Triggers

__all__ = ["KINDS", "Triggers"]
