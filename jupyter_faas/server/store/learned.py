"""Learned preload: the modules deployed functions imported, most recently seen first.

The pool learns them from environments (what INIT and a first invocation imported) and
the zygote imports them in the background at the next start, within a memory budget.
"""

from __future__ import annotations

import time


class LearnedModulesTable:
    def learn_modules(self, names: list[str]) -> None:
        """Record that functions imported ``names`` now (one transaction)."""
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT INTO learned_modules(name, last_seen, seen) VALUES (?, ?, 1) "
                           "ON CONFLICT(name) DO UPDATE SET last_seen=excluded.last_seen, "
                           "seen=seen + 1", [(n, now) for n in names])

    def forget_learned_modules(self, names: list[str]) -> None:
        """Forget ``names`` (the zygote could not import them: not preloaded again)."""
        with self._tx() as db:
            db.executemany("DELETE FROM learned_modules WHERE name = ?", [(n,) for n in names])

    def learned_modules(self, limit: int = 32) -> list[str]:
        """The ``limit`` modules seen most recently, most recent first."""
        rows = self.db.execute("SELECT name FROM learned_modules ORDER BY last_seen DESC, name "
                                "LIMIT ?", (limit,)).fetchall()
        return [r[0] for r in rows]
