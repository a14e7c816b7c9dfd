"""File events: a file matching a pattern under a watched directory invokes its function
asynchronously with S3-shaped records (reference/lambda.md §6).

::

    watchfiles (inotify, in a thread) ─► changed paths ─► settle: stat again after SETTLE_S;
      unchanged? complete (a file still being written keeps changing, so it is reported once,
      when it stops) ─► compared with the snapshot ─► ObjectCreated:Put / ObjectRemoved:Delete
      ─► Event invocations and the new snapshot in one transaction (Store.fired_trigger)

State (the trigger row's cursor): ``files``, a snapshot ``{relative path: [size, mtime_ns]}``
of every matching file already reported or seen.  At start the directory is scanned and
compared with it, so files that appeared, changed or went away while the server was down
are reported then, once (``caught_up`` counts them); a crash between a firing and its
snapshot cannot happen, because both are one transaction.

A modification is ``ObjectCreated:Put`` too (S3 reports an overwrite so).  The bucket is
the watched directory's name; the key is the path relative to it, URL-encoded as S3 does
(``quote_plus``, slashes kept); the eTag is the MD5 of the content.  Not here: rename
detection (a rename is a delete and a create, as S3 has no rename).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import hashlib
import json
import logging
import os
import stat
import time
import urllib.parse
import uuid

from ...errors import FaaSError, InvalidParameter
from ..engine.async_queue import REGION, iso_ms

log = logging.getLogger("jupyter_faas.server")

FILE_EVENTS = ("created", "modified", "deleted")
#: a changed file is complete once its size and mtime stayed the same this long
SETTLE_S = 0.1
#: watchfiles: report a burst of changes after this many ms without a new one
STEP_MS = 20
#: a watcher thread looks at its stop event at least this often
WATCH_TIMEOUT_MS = 500


def s3_event(trigger_id: str, bucket: str, key: str, name: str, size: int | None, etag: str | None,
             sequencer: int, now: float) -> dict:
    """One S3 notification record, as Lambda receives it."""
    obj = {"key": urllib.parse.quote_plus(key, safe="/"), "sequencer": f"{sequencer:016X}"}
    if size is not None:
        obj["size"] = size
        obj["eTag"] = etag
    rid = uuid.uuid4().hex[:16].upper()
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventTime": iso_ms(now),
        "eventName": name, "userIdentity": {"principalId": "local"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": rid, "x-amz-id-2": uuid.uuid4().hex},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": trigger_id,
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "local"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": obj}}]}


def md5_of(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Files:
    """The ``file`` trigger kind: one watcher task per enabled trigger."""

    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.watches: dict[str, tuple] = {}  # trigger id -> (task, stop event)
        self.pending: dict[str, dict] = {}   # trigger id -> {relative path: (signature, timer)}
        #: the Rust watchers block in these threads (not the loop's default pool)
        self.threads = concurrent.futures.ThreadPoolExecutor(max_workers=256,
                                                             thread_name_prefix="faas-file-watch")

    # ---- the spec ------------------------------------------------------------------------

    def check(self, spec: dict) -> dict:
        unknown = set(spec) - {"path", "pattern", "events", "recursive"}
        if unknown:
            raise InvalidParameter(f"a file trigger takes path, pattern, events and recursive, not "
                                   f"{', '.join(sorted(unknown))}")
        path = spec.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise InvalidParameter(f"path={path!r}: give the watched directory's absolute path")
        if not os.path.isdir(path):
            raise InvalidParameter(f"path={path!r}: the watched directory does not exist; create it first")
        pattern = spec.get("pattern", "*")
        if not isinstance(pattern, str) or not pattern:
            raise InvalidParameter(f"pattern={pattern!r}: give a glob such as '*.csv'")
        events = spec.get("events", ["created"])
        if isinstance(events, str):
            events = [events]
        if (not isinstance(events, (list, tuple)) or not events
                or any(e not in FILE_EVENTS for e in events)):
            raise InvalidParameter(f"events={events!r}: give one or more of {', '.join(FILE_EVENTS)}")
        recursive = spec.get("recursive", True)
        if not isinstance(recursive, bool):
            raise InvalidParameter(f"recursive={recursive!r} is not true or false")
        return {"path": os.path.normpath(path), "pattern": pattern,
                "events": [e for e in FILE_EVENTS if e in events], "recursive": recursive}

    def initial_state(self, row: dict) -> dict:
        """Files already there are not events (S3 notifies only what happens after)."""
        return {"files": self._scan(row["spec"])}

    def describe(self, row: dict) -> dict:
        return {"watching": row["spec"]["path"], "pending": len(self.pending.get(row["id"], {}))}

    # ---- running -------------------------------------------------------------------------

    def start(self, row: dict, restart: bool = False) -> None:
        self.stop(row["id"])
        if not os.path.isdir(row["spec"]["path"]):
            log.warning("file trigger %s: %s is gone; not watching", row["id"], row["spec"]["path"])
            return
        if restart:  # what happened while the server was down
            self._fire(row["id"], self._scan(row["spec"]), caught_up=True)
        stop = asyncio.Event()
        task = self.service.spawn(self._watch(row["id"], row["spec"], stop))
        self.watches[row["id"]] = (task, stop)
        self.pending[row["id"]] = {}

    def stop(self, trigger_id: str) -> None:
        watch = self.watches.pop(trigger_id, None)
        if watch is not None:
            watch[1].set()
            watch[0].cancel()
        for _, timer in self.pending.pop(trigger_id, {}).values():
            timer.cancel()

    def close(self) -> None:
        for trigger_id in list(self.watches):
            self.stop(trigger_id)
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def _watch(self, trigger_id: str, spec: dict, stop: asyncio.Event) -> None:
        """Feed watchfiles' changes to :meth:`_changed`.  The Rust watcher blocks a thread of
        our own pool; once it is watching, a scan catches what came before it, and a new
        directory is scanned too (inotify watches it only after files may be in it)."""
        from watchfiles._rust_notify import RustNotify  # watchfiles' documented Rust backend
        loop = asyncio.get_running_loop()
        try:
            with RustNotify([spec["path"]], False, False, 300, spec["recursive"], True) as watcher:
                self._rescan(trigger_id, spec, spec["path"])
                while not stop.is_set():
                    raw = await loop.run_in_executor(self.threads, watcher.watch, 1600, STEP_MS,
                                                     WATCH_TIMEOUT_MS, stop)
                    if raw in ("stop", "signal"):
                        return
                    if raw == "timeout":
                        continue
                    for _, path in raw:
                        if os.path.isdir(path):
                            self._rescan(trigger_id, spec, path)
                            continue
                        rel = os.path.relpath(path, spec["path"])
                        if self._matches(spec, rel):
                            self._changed(trigger_id, spec, rel)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a watch that broke is logged; the trigger stays listed
            log.exception("file trigger %s stopped watching %s", trigger_id, spec["path"])

    def _rescan(self, trigger_id: str, spec: dict, directory: str) -> None:
        """Every matching file under ``directory`` that differs from the snapshot is a change."""
        row = self.store.get_trigger(trigger_id)
        if row is None:
            return
        before = row["state"].get("files", {})
        sub = dict(spec, path=directory)
        found = {os.path.relpath(os.path.join(directory, rel), spec["path"]): sig
                 for rel, sig in self._scan(sub).items()}
        for rel, sig in found.items():
            if self._matches(spec, rel) and list(before.get(rel) or []) != sig:
                self._changed(trigger_id, spec, rel)

    def _changed(self, trigger_id: str, spec: dict, rel: str) -> None:
        """A change was seen: look again after SETTLE_S (again and again while it changes)."""
        pending = self.pending.get(trigger_id)
        if pending is None:
            return
        old = pending.pop(rel, None)
        if old is not None:
            old[1].cancel()
        sig = _signature(os.path.join(spec["path"], rel))
        pending[rel] = (sig, self.clock.call_later(SETTLE_S, self._settled, trigger_id, spec, rel))

    def _settled(self, trigger_id: str, spec: dict, rel: str) -> None:
        pending = self.pending.get(trigger_id)
        if pending is None or rel not in pending:
            return
        sig, _ = pending.pop(rel)
        now_sig = _signature(os.path.join(spec["path"], rel))
        if now_sig != sig:   # still being written
            self._changed(trigger_id, spec, rel)
            return
        row = self.store.get_trigger(trigger_id)
        if row is None or not row["enabled"]:
            return
        files = dict(row["state"].get("files", {}))
        if now_sig is None:
            files.pop(rel, None)
        else:
            files[rel] = list(now_sig)
        self._fire(trigger_id, files, only={rel})

    # ---- firing --------------------------------------------------------------------------

    def _fire(self, trigger_id: str, files: dict, caught_up: bool = False, only: set | None = None) -> None:
        """Compare ``files`` (the directory now) with the snapshot; invoke for each difference the
        trigger wants, and keep ``files`` as the new snapshot, in one transaction."""
        row = self.store.get_trigger(trigger_id)
        if row is None:
            return
        spec, before = row["spec"], row["state"].get("files", {})
        now = self.clock.time()
        bucket = os.path.basename(spec["path"].rstrip(os.sep)) or "root"
        events = []
        for rel in sorted(set(before) | set(files)):
            if only is not None and rel not in only:
                continue
            old, new = before.get(rel), files.get(rel)
            if old is not None and new is not None and list(old) == list(new):
                continue
            kind = "created" if old is None else "deleted" if new is None else "modified"
            if kind not in spec["events"]:
                continue
            path = os.path.join(spec["path"], rel)
            if new is None:
                events.append(s3_event(trigger_id, bucket, rel, "ObjectRemoved:Delete", None, None,
                                       time.time_ns(), now))
                continue
            try:
                etag = md5_of(path)
            except OSError:
                continue  # gone again; its deletion is the next change
            events.append(s3_event(trigger_id, bucket, rel, "ObjectCreated:Put", new[0], etag, new[1], now))
        state = dict(row["state"], files=files)
        if not events:
            if files != before:
                self.store.update_trigger(trigger_id, state=state)
            return
        payloads = [json.dumps(e, separators=(",", ":")).encode() for e in events]
        try:
            self.service.invoke_async_many(
                row["function"], payloads, triggered_by="file",
                write=lambda rows: self.store.fired_trigger(trigger_id, now, state, caught_up, rows))
        except FaaSError as exc:  # its function was deleted: keep the snapshot, drop the events
            log.warning("file trigger %s could not invoke %s: %s", trigger_id, row["function"], exc)
            self.store.update_trigger(trigger_id, state=state)

    def _scan(self, spec: dict) -> dict:
        out = {}
        base = spec["path"]
        walker = os.walk(base) if spec["recursive"] else [(base, [], os.listdir(base))]
        for directory, _, names in walker:
            for name in names:
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, base)
                if self._matches(spec, rel):
                    sig = _signature(path)
                    if sig is not None:
                        out[rel] = list(sig)
        return out

    @staticmethod
    def _matches(spec: dict, rel: str) -> bool:
        pattern = spec["pattern"]
        return fnmatch.fnmatch(rel if "/" in pattern else os.path.basename(rel), pattern)


def _signature(path: str) -> tuple | None:
    """``(size, mtime_ns)`` of a regular file, or None (gone, or not a file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
