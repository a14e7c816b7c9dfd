"""The schema: numbered migrations, applied in order and recorded in ``PRAGMA user_version``.

A migration is never edited once released: a change is a new one at the end.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS = [
    # 1: the core schema
    """
    CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        latest_version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE versions (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        content_sha256 TEXT NOT NULL,
        code_sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (function, version)
    );
    CREATE UNIQUE INDEX versions_content ON versions(function, content_sha256);
    CREATE TABLE invocations (
        request_id TEXT PRIMARY KEY,
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        invocation_type TEXT NOT NULL,
        encoding TEXT NOT NULL,
        status TEXT NOT NULL,
        payload BLOB,
        result BLOB,
        error TEXT,
        error_type TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        duration_ms REAL,
        billed_duration_ms INTEGER,
        memory_size_mb INTEGER,
        max_memory_used_mb INTEGER,
        init_duration_ms REAL,
        environment_id TEXT
    );
    CREATE INDEX invocations_created ON invocations(created_at DESC);
    CREATE INDEX invocations_function ON invocations(function, created_at DESC);
    CREATE INDEX invocations_status ON invocations(status, created_at DESC);
    CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        ts REAL NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX log_lines_request ON log_lines(request_id, id);
    """,
    # 2: the side panel's queries. Keyset paging orders by (created_at, request_id) so rows
    # with equal timestamps are neither skipped nor repeated, under each filter; duration
    # percentiles per function are an OFFSET walk along (function, duration_ms); function
    # statistics and per-minute metrics read only the covering "metrics" index. The
    # version-1 indexes are prefixes of these, so they go. The payload is dropped when an
    # invocation ends, so a short summary of the input is kept for the invocation's detail.
    """
    ALTER TABLE invocations ADD COLUMN input_summary TEXT;
    CREATE INDEX invocations_page ON invocations(created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_page ON invocations(function, created_at DESC, request_id DESC);
    CREATE INDEX invocations_status_page ON invocations(status, created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_status_page
        ON invocations(function, status, created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_duration ON invocations(function, duration_ms);
    CREATE INDEX invocations_function_metrics ON invocations(function, created_at, status,
        started_at, ended_at, duration_ms, billed_duration_ms, memory_size_mb);
    DROP INDEX invocations_created;
    DROP INDEX invocations_function;
    DROP INDEX invocations_status;
    """,
    # 3: large results live in files (see the module docstring)
    """
    ALTER TABLE invocations ADD COLUMN result_file TEXT;
    """,
    # 4: out-of-band buffers in files of the buffer directory (see backends/local/buffer_files.py): the
    # argument's while queued, the result's for good; the partial index finds the latter at start
    """
    ALTER TABLE invocations ADD COLUMN payload_buffers TEXT;
    ALTER TABLE invocations ADD COLUMN result_buffers TEXT;
    CREATE INDEX invocations_result_buffers ON invocations(result_buffers) WHERE result_buffers IS NOT NULL;
    """,
    # 5: a deleted function is remembered, not forgotten: its row stays with deleted_at set
    # (and its versions and code, so the same name deployed again keeps counting versions
    # and its invocations keep naming versions that exist); deploying the name clears it
    """
    ALTER TABLE functions ADD COLUMN deleted_at REAL;
    """,
    # 6 (events): an Event invocation's attempts (one row each, all under its request id) and
    # what triggered it; each function's event invoke config; the dead-letter list; triggers
    # (rows reconciled at start); local queues and their messages (SQS semantics)
    """
    ALTER TABLE invocations ADD COLUMN attempts INTEGER;
    ALTER TABLE invocations ADD COLUMN triggered_by TEXT;
    CREATE TABLE attempts (
        request_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
        error_type TEXT, error TEXT, started_at REAL, ended_at REAL NOT NULL, duration_ms REAL,
        billed_duration_ms INTEGER, max_memory_used_mb INTEGER, init_duration_ms REAL,
        PRIMARY KEY (request_id, attempt)
    );
    CREATE TABLE event_configs (function TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, function TEXT NOT NULL,
        payload BLOB, input_summary TEXT, condition TEXT NOT NULL, error_type TEXT, error_message TEXT,
        attempts INTEGER NOT NULL, created_at REAL NOT NULL, redriven_at REAL, redrive_request_id TEXT
    );
    CREATE INDEX dead_letters_function ON dead_letters(function, id);
    CREATE TABLE triggers (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, function TEXT NOT NULL, spec TEXT NOT NULL,
        enabled INTEGER NOT NULL, created_at REAL NOT NULL, last_fired_at REAL, fired INTEGER NOT NULL,
        caught_up INTEGER NOT NULL, state TEXT
    );
    """,
    # 7: Lambda's model over the content-addressed versions (see store/lambda_tables.py):
    # published versions pin an engine version, aliases name published versions, layer
    # versions are zips, and per-qualifier settings (event-invoke, provisioned concurrency).
    # A function's rows go when it is deleted (LambdaTables.forget_lambda_rows; ON DELETE CASCADE
    # too); a deleted version or layer version keeps its row (``deleted``) so its number is
    # never given out again, as in Lambda. An invocation records the Lambda version it ran as
    # ($LATEST or a published number) beside the engine version.
    """
    CREATE TABLE published_versions (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        engine_version INTEGER NOT NULL,
        description TEXT NOT NULL,
        created_at REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (function, number)
    );
    CREATE TABLE aliases (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        weights TEXT NOT NULL,
        description TEXT NOT NULL,
        revision TEXT NOT NULL,
        PRIMARY KEY (function, name)
    );
    CREATE TABLE layer_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE function_settings (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (function, qualifier, kind)
    );
    ALTER TABLE invocations ADD COLUMN lambda_version TEXT;
    """,
    # 8: learned preload (store/learned.py): modules deployed functions imported, which the
    # zygote imports in the background at start
    """
    CREATE TABLE learned_modules (name TEXT PRIMARY KEY, last_seen REAL NOT NULL,
                                  seen INTEGER NOT NULL);
    """,
    # 9 (queues): local queues with SQS semantics; a dead-letter queue is a queue whose
    # redrive_to names its source.  A message is a row until it is deleted (processed);
    # receiving it moves visible_at past the visibility timeout and names the invocation that
    # got it (request_id), so a restart settles it from that invocation's recorded end
    """
    CREATE TABLE queues (
        name TEXT PRIMARY KEY, created_at REAL NOT NULL, visibility_timeout REAL,
        dead_letter_queue TEXT, redrive_to TEXT
    );
    CREATE TABLE queue_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
        body TEXT NOT NULL, message_attributes TEXT, md5 TEXT NOT NULL, sent_at REAL NOT NULL,
        visible_at REAL NOT NULL, receive_count INTEGER NOT NULL, first_received_at REAL,
        receipt_handle TEXT, request_id TEXT
    );
    CREATE INDEX queue_messages_visible ON queue_messages(queue, visible_at, seq);
    CREATE INDEX queue_messages_request ON queue_messages(request_id) WHERE request_id IS NOT NULL;
    """,
    # 10: how the environment that ran an invocation was initialized (Lambda's
    # AWS_LAMBDA_INITIALIZATION_TYPE: on-demand, provisioned-concurrency, snap-start)
    """
    ALTER TABLE invocations ADD COLUMN init_type TEXT;
    """,
    # 11: the duration index holds ended invocations only: a new row (no duration yet) no
    # longer writes an index page for its NULL key, nor its end moves it (the percentile
    # query says ``duration_ms IS NOT NULL``, so it still uses the index)
    """
    DROP INDEX invocations_function_duration;
    CREATE INDEX invocations_function_duration ON invocations(function, duration_ms)
        WHERE duration_ms IS NOT NULL;
    """,
    # 12: an invocation whose START, [ERROR], END and REPORT lines are not stored as lines but
    # made from its row when read (engine/platform_lines.py): a leased one that ended cleanly.
    # Its row holds every figure they show; three rows more per invocation were a quarter of
    # what storing a map of quick items cost.
    """
    ALTER TABLE invocations ADD COLUMN implicit_lines INTEGER;
    """,
    # 13: a queued invocation's map group, ``[id, limit]`` as JSON (a map's ``concurrency``):
    # a restart queues it again in its group, so the cap holds on the next server too (it was
    # kept in memory only, and a killed server's queued map items all started at once after)
    """
    ALTER TABLE invocations ADD COLUMN map_group TEXT;
    """,
]


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations ``db`` lacks, each in its own transaction."""
    current = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(number)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
