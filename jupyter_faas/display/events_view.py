"""The events view: async invocations and what triggers fired, live in the cell.

It shows a set of invocations as the server records them (``fetch()`` returns their rows:
``request_id``, ``status``, ``attempts``, ``triggered_by``, ``created_at``, ``error_type``):
counts of queued, retrying (queued again, waiting for its next attempt), running,
succeeded and failed, and the newest rows with what triggered each, its attempts and its
outcome.  It redraws from the display thread about once a second until every invocation
it follows has ended (or, for a trigger, for ``live_s`` seconds).  Outside a widget
frontend it prints the same summary once, as text.  Like the other views it imports
nothing of the client: it is handed ``fetch``.
"""

from __future__ import annotations

import contextvars
import datetime
import html
import threading
import time

from . import ticker
from .views import _STATUS_COLOURS, _badge, _plain_box, widget_frontend

REFRESH_S = 1.0
ROWS_SHOWN = 12
ENDED = ("succeeded", "failed", "timed_out", "cancelled", "throttled")
COUNTED = ("queued", "retrying", "running", "succeeded", "failed")


def counts(rows: list[dict]) -> dict:
    c = dict.fromkeys(COUNTED, 0)
    for r in rows:
        status = r.get("status")
        if status == "queued":
            c["retrying" if (r.get("attempts") or 0) >= 1 else "queued"] += 1
        elif status in ("running", "succeeded"):
            c[status] += 1
        elif status in ENDED and status != "cancelled":
            c["failed"] += 1
    return c


def _when(t: float | None) -> str:
    if not t:
        return ""
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def summary(title: str, rows: list[dict]) -> str:
    c = counts(rows)
    fired = len(rows)
    parts = [f"{title}: {fired} invocation{'s' if fired != 1 else ''}"]
    parts += [f"{c[k]} {k}" for k in COUNTED if c[k] or k in ("succeeded", "failed")]
    attempts = sum(r.get("attempts") or 0 for r in rows)
    if attempts:
        parts.append(f"{attempts} attempts")
    return " · ".join(parts)


def text_lines(title: str, rows: list[dict], limit: int = ROWS_SHOWN) -> list[str]:
    lines = [summary(title, rows)]
    for r in rows[:limit]:
        error = f" {r['error_type']}" if r.get("error_type") else ""
        lines.append(f"  {_when(r.get('created_at'))} {r.get('triggered_by') or 'direct':<8} "
                     f"{r['request_id']} {r.get('status')} attempts={r.get('attempts') or 0}{error}")
    if len(rows) > limit:
        lines.append(f"  … {len(rows) - limit} more")
    return lines


class EventsView:
    """``title``: what it shows (``handle.invoke_async``, ``schedule rate(1 minute)``);
    ``fetch()``: the rows, newest first; ``live_s``: follow for at most this long (None: until
    every row has ended)."""

    def __init__(self, title: str, fetch, live_s: float | None = None, extra=None):
        self.title = title
        self.fetch = fetch
        self.extra = extra or (lambda: "")
        self.until = time.monotonic() + live_s if live_s else None
        self.rows: list[dict] = []
        self.widgets = widget_frontend()
        self.ctx = contextvars.copy_context()
        self._fetched = 0.0
        self._lock = threading.Lock()
        self.ended = False

    def show(self) -> None:
        self._refresh()
        if not self.widgets:
            import sys
            print("\n".join(text_lines(self.title, self.rows)), file=sys.stderr)
            return
        import ipywidgets
        from IPython.display import display
        self.body = ipywidgets.HTML(self._html())
        self.box = _plain_box(lambda: "\n".join(text_lines(self.title, self.rows)))([self.body])
        self.handle = display(self.box, display_id=True)
        if not self._done():
            ticker.add(self)

    def _done(self) -> bool:
        if self.until is not None:
            return time.monotonic() >= self.until
        return bool(self.rows) and all(r.get("status") in ENDED for r in self.rows)

    def _refresh(self) -> None:
        try:
            self.rows = list(self.fetch())
        except Exception as exc:  # noqa: BLE001 - a view shows what it can
            self.rows = self.rows or []
            self.error = str(exc)
        self._fetched = time.monotonic()

    def redraw(self) -> None:
        with self._lock:
            if time.monotonic() - self._fetched < REFRESH_S:
                return
            self._refresh()
            self.ctx.run(self._draw)
            if self._done():
                ticker.remove(self)
                self.ended = True
                # the saved notebook's text/plain is the final summary, not the first one
                self.ctx.run(self.handle.update, self.box)

    def _draw(self) -> None:
        self.body.value = self._html()

    def _html(self) -> str:
        c = counts(self.rows)
        count_html = " · ".join(f"<span style='color:{_STATUS_COLOURS.get(k, '#ef6c00')}'>{k} <b>{c[k]:,}</b>"
                                f"</span>" for k in COUNTED)
        head = (f"<b>{html.escape(self.title)}</b> · {len(self.rows):,} invocations"
                f"{html.escape(self.extra())}<br>{count_html}")
        cells = "".join(
            f"<tr><td>{_when(r.get('created_at'))}</td><td>{html.escape(r.get('triggered_by') or 'direct')}</td>"
            f"<td>{_badge('retrying' if r.get('status') == 'queued' and (r.get('attempts') or 0) else r.get('status', ''))}"
            f"</td><td style='text-align:right'>{r.get('attempts') or 0}</td>"
            f"<td><code>{html.escape(r['request_id'][-12:])}</code></td>"
            f"<td style='color:#c62828'>{html.escape(r.get('error_type') or '')}</td></tr>"
            for r in self.rows[:ROWS_SHOWN])
        more = (f"<div style='color:#888'>… {len(self.rows) - ROWS_SHOWN:,} more</div>"
                if len(self.rows) > ROWS_SHOWN else "")
        table = ("<table style='font-size:12px'><tr><th>time</th><th>trigger</th><th>status</th>"
                 f"<th>attempts</th><th>request</th><th>error</th></tr>{cells}</table>") if self.rows else ""
        return head + table + more
