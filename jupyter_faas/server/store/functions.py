"""Functions, their versions (config + code hash) and code blobs (content-addressed).

A deleted function keeps its row, marked ``deleted_at``, with its versions and code:
reads of deployed functions leave it out, :meth:`FunctionsTable.deleted_at` says when it
went, and deploying the name again revives it (the same code and config: the same
version; a new one: the next number, never a reused one).
"""

from __future__ import annotations

import hashlib
import json
import time

from ..model import FunctionVersion
from .rows import _function_row


class FunctionsTable:
    def deploy(self, name: str, code: bytes, config: dict) -> tuple[int, bool]:
        """Record code+config for ``name``; returns (version, created). Same content, same version."""
        code_sha = hashlib.sha256(code).hexdigest()
        config_json = json.dumps(config, sort_keys=True)
        content = hashlib.sha256(code_sha.encode() + config_json.encode()).hexdigest()
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT version FROM versions WHERE function=? AND content_sha256=?",
                             (name, content)).fetchone()
            if row is not None:
                # A deleted function deployed again is deployed afresh: created now.
                db.execute("UPDATE functions SET latest_version=?, updated_at=?, deleted_at=NULL, "
                           "created_at=CASE WHEN deleted_at IS NULL THEN created_at ELSE ? END "
                           "WHERE name=?", (row[0], now, now, name))
                return row[0], False
            db.execute("INSERT OR IGNORE INTO blobs(sha256, data) VALUES (?, ?)", (code_sha, code))
            last = db.execute("SELECT MAX(version) FROM versions WHERE function=?", (name,)).fetchone()[0]
            version = (last or 0) + 1
            db.execute("INSERT INTO functions(name, latest_version, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "latest_version=excluded.latest_version, updated_at=excluded.updated_at, "
                       "created_at=CASE WHEN deleted_at IS NULL THEN created_at "
                       "ELSE excluded.created_at END, deleted_at=NULL",
                       (name, version, now, now))
            db.execute("INSERT INTO versions(function, version, content_sha256, code_sha256, config, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (name, version, content, code_sha, config_json, now))
            return version, True

    def get_function(self, name: str, version: int | None = None) -> FunctionVersion | None:
        if version is None:
            row = self.db.execute(
                "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
                "ON v.function=f.name AND v.version=f.latest_version "
                "WHERE f.name=? AND f.deleted_at IS NULL", (name,)).fetchone()
        else:
            row = self.db.execute(
                "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
                "ON v.function=f.name WHERE f.name=? AND v.version=? AND f.deleted_at IS NULL",
                (name, version)).fetchone()
        return _function_row(row) if row else None

    def list_functions(self) -> list[FunctionVersion]:
        rows = self.db.execute(
            "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
            "ON v.function=f.name AND v.version=f.latest_version WHERE f.deleted_at IS NULL "
            "ORDER BY f.name").fetchall()
        return [_function_row(r) for r in rows]

    def code(self, code_sha256: str) -> bytes:
        row = self.db.execute("SELECT data FROM blobs WHERE sha256=?", (code_sha256,)).fetchone()
        return bytes(row[0]) if row else b""

    def delete_function(self, name: str) -> bool:
        """Mark a deployed function deleted (now); False if there is none to delete."""
        with self._tx() as db:
            self.forget_lambda_rows(db, name)  # its published versions, aliases, settings (lambda_tables)
            return db.execute("UPDATE functions SET deleted_at=? WHERE name=? AND deleted_at IS NULL",
                              (time.time(), name)).rowcount > 0

    def deleted_at(self, name: str) -> float | None:
        """When ``name`` was deleted (epoch seconds), or None: deployed, or never was."""
        row = self.db.execute("SELECT deleted_at FROM functions WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def known_function(self, name: str) -> bool:
        """Was ``name`` ever deployed (deleted or not)?  Its invocations and logs may be stored."""
        return self.db.execute("SELECT 1 FROM functions WHERE name=?", (name,)).fetchone() is not None

    # ---- invocations -------------------------------------------------------------------

