"""The store: the only SQL in the project (SQLite, WAL), with numbered migrations."""

from .sqlite import INLINE_MAX, INVOCATION_COLUMNS, Store

__all__ = ["INLINE_MAX", "INVOCATION_COLUMNS", "Store"]
