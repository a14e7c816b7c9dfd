"""What Lambda's model adds to functions: published versions, aliases, layer versions and
per-qualifier settings (event-invoke configs, provisioned concurrency).

A published version is a row naming the engine version it pins (engine versions are
immutable, so the published one is too).  Numbers count up per function and are never
reused: a deleted version or layer version keeps its row, marked ``deleted``.  A function's
rows go when it is deleted (:meth:`LambdaTables.forget_lambda_rows`, in the transaction that
marks it deleted): the same name created again starts from version 1 with no aliases, as
in Lambda.
"""

from __future__ import annotations

import json
import time


class LambdaTables:
    def forget_lambda_rows(self, db, function: str) -> None:
        """Inside the caller's transaction ``db``: drop ``function``'s versions, aliases, settings."""
        db.execute("DELETE FROM published_versions WHERE function=?", (function,))
        db.execute("DELETE FROM aliases WHERE function=?", (function,))
        db.execute("DELETE FROM function_settings WHERE function=?", (function,))

    # ---- published versions ------------------------------------------------------------

    def publish_version(self, function: str, engine_version: int, description: str) -> tuple[int, bool]:
        """``(number, created)``: the newest published version if it pins ``engine_version``
        already (Lambda publishes nothing when nothing changed), else a new number."""
        with self._tx() as db:
            last = db.execute("SELECT number, engine_version, deleted FROM published_versions "
                              "WHERE function=? ORDER BY number DESC LIMIT 1", (function,)).fetchone()
            if last is not None and last["engine_version"] == engine_version and not last["deleted"]:
                return last["number"], False
            number = (last["number"] if last else 0) + 1
            db.execute("INSERT INTO published_versions(function, number, engine_version, description, "
                       "created_at) VALUES (?, ?, ?, ?, ?)",
                       (function, number, engine_version, description, time.time()))
            return number, True

    def published_versions(self, function: str) -> list[dict]:
        rows = self.db.execute("SELECT number, engine_version, description, created_at FROM "
                               "published_versions WHERE function=? AND deleted=0 ORDER BY number",
                               (function,)).fetchall()
        return [dict(r) for r in rows]

    def published_version(self, function: str, number: int) -> dict | None:
        row = self.db.execute("SELECT number, engine_version, description, created_at FROM "
                              "published_versions WHERE function=? AND number=? AND deleted=0",
                              (function, number)).fetchone()
        return dict(row) if row else None

    def delete_published_version(self, function: str, number: int) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE published_versions SET deleted=1 WHERE function=? AND number=? "
                              "AND deleted=0", (function, number)).rowcount > 0

    # ---- aliases -----------------------------------------------------------------------

    def put_alias(self, function: str, alias: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO aliases(function, name, version, weights, description, revision) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(function, name) DO UPDATE SET "
                       "version=excluded.version, weights=excluded.weights, "
                       "description=excluded.description, revision=excluded.revision",
                       (function, alias["name"], alias["version"], json.dumps(alias["weights"]),
                        alias["description"], alias["revision"]))

    def aliases(self, function: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM aliases WHERE function=? ORDER BY name", (function,)).fetchall()
        return [_alias(r) for r in rows]

    def alias(self, function: str, name: str) -> dict | None:
        row = self.db.execute("SELECT * FROM aliases WHERE function=? AND name=?", (function, name)).fetchone()
        return _alias(row) if row else None

    def delete_alias(self, function: str, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM aliases WHERE function=? AND name=?", (function, name)).rowcount > 0

    # ---- layer versions ----------------------------------------------------------------

    def add_layer_version(self, name: str, config: dict) -> tuple[int, float]:
        """A new version of layer ``name`` (numbers are never reused); ``(version, created_at)``."""
        now = time.time()
        with self._tx() as db:
            last = db.execute("SELECT MAX(version) FROM layer_versions WHERE name=?", (name,)).fetchone()[0]
            version = (last or 0) + 1
            db.execute("INSERT INTO layer_versions(name, version, config, created_at) VALUES (?, ?, ?, ?)",
                       (name, version, json.dumps(config, sort_keys=True), now))
            return version, now

    def layer_versions(self, name: str | None = None) -> list[dict]:
        """Live layer versions, of ``name`` or of every layer, by name then version."""
        if name is None:
            rows = self.db.execute("SELECT * FROM layer_versions WHERE deleted=0 ORDER BY name, version")
        else:
            rows = self.db.execute("SELECT * FROM layer_versions WHERE deleted=0 AND name=? ORDER BY version",
                                   (name,))
        return [_layer(r) for r in rows.fetchall()]

    def layer_version(self, name: str, version: int) -> dict | None:
        row = self.db.execute("SELECT * FROM layer_versions WHERE name=? AND version=? AND deleted=0",
                              (name, version)).fetchone()
        return _layer(row) if row else None

    def delete_layer_version(self, name: str, version: int) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE layer_versions SET deleted=1 WHERE name=? AND version=? AND deleted=0",
                              (name, version)).rowcount > 0

    # ---- per-qualifier settings: kind 'event_invoke' | 'provisioned' -------------------

    def put_setting(self, function: str, qualifier: str, kind: str, config: dict) -> float:
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO function_settings(function, qualifier, kind, config, updated_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(function, qualifier, kind) DO UPDATE SET "
                       "config=excluded.config, updated_at=excluded.updated_at",
                       (function, qualifier, kind, json.dumps(config, sort_keys=True), now))
        return now

    def setting(self, function: str, qualifier: str, kind: str) -> dict | None:
        row = self.db.execute("SELECT config, updated_at FROM function_settings WHERE function=? AND "
                              "qualifier=? AND kind=?", (function, qualifier, kind)).fetchone()
        return dict(json.loads(row["config"]), updated_at=row["updated_at"]) if row else None

    def settings(self, kind: str, function: str | None = None) -> list[dict]:
        """Every setting of ``kind`` (of ``function``): ``{function, qualifier, updated_at, **config}``."""
        sql = "SELECT * FROM function_settings WHERE kind=?"
        args: tuple = (kind,)
        if function is not None:
            sql, args = sql + " AND function=?", (kind, function)
        rows = self.db.execute(sql + " ORDER BY function, qualifier", args).fetchall()
        return [dict(json.loads(r["config"]), function=r["function"], qualifier=r["qualifier"],
                     updated_at=r["updated_at"]) for r in rows]

    def delete_setting(self, function: str, qualifier: str, kind: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM function_settings WHERE function=? AND qualifier=? AND kind=?",
                              (function, qualifier, kind)).rowcount > 0


def _alias(row) -> dict:
    return {"name": row["name"], "version": row["version"], "weights": json.loads(row["weights"]),
            "description": row["description"], "revision": row["revision"]}


def _layer(row) -> dict:
    return dict(json.loads(row["config"]), name=row["name"], version=row["version"],
                created_at=row["created_at"])
