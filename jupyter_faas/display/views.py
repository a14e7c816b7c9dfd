"""The call view and the map view, as ipywidgets in a kernel or plain text elsewhere.

Widgets are created and displayed in the caller's thread context (captured with
``contextvars``) so their output lands in the cell that made the call, even
when the display thread draws them.  In a widget frontend the map view's
buttons keep working while the cell blocks: their comm messages are routed to a
kernel subshell (ipykernel >= 7), see :mod:`.subshell`.
"""

from __future__ import annotations

import collections
import contextvars
import html
import sys
import threading
import time

from . import ticker
from .progress import LogTail, MapProgress, error_text, fmt_seconds, report_text

CALL_VIEW_AFTER_S = 1.0
#: a call that ended before its view appeared prints at most this many of its handler's last
#: lines, as the function's own prints would have printed them locally
ECHO_LINES = 200
#: at most this many log lines per redraw in text mode; the rest are summarised
TEXT_LINES_PER_REDRAW = 40
TEXT_PROGRESS_EVERY_S = 2.0


def widget_frontend() -> bool:
    """True inside a Jupyter kernel with ipywidgets (the frontend renders them, or nbclient
    records their state); False in a script or terminal IPython."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; a script need not pay for it
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _pre(lines: list[str], hidden: int, note: str, ended: bool = False) -> str:
    head = (f"<div style='color:#888'>… {hidden:,} earlier lines not shown ({note})</div>"
            if hidden else "")
    empty = "(no output)" if ended else "(no output yet)"
    body = html.escape("\n".join(lines)) if lines else f"<span style='color:#888'>{empty}</span>"
    return (f"{head}<pre style='max-height:16em;overflow:auto;margin:0;font-size:12px;"
            f"line-height:1.3'>{body}</pre>")


def _error_pre(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    # Lines kept whole (a traceback's ^^^^ markers point at columns): it scrolls sideways.
    return (f"<pre style='color:#c62828;white-space:pre;overflow-x:auto;margin:0'>"
            f"{html.escape(error_text(exc))}</pre>")


def _print_new_lines(tail: LogTail, seen: int, prefix: str = "") -> int:
    """Print the lines ``tail`` got since ``seen`` (at most a screenful) to stderr; the new count."""
    lines, _ = tail.snapshot()
    new = tail.total - seen
    if new > 0:
        show = lines[-min(new, TEXT_LINES_PER_REDRAW):]
        if new > len(show):
            print(f"{prefix}… {new - len(show)} log lines not shown (all are kept in the store)",
                  file=sys.stderr)
        for line in show:
            print(prefix + line, file=sys.stderr)
    return tail.total


_STATUS_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#c62828",
                   "throttled": "#ef6c00", "cancelled": "#6d4c41", "running": "#1565c0",
                   "queued": "#757575", "submitting": "#757575"}


def _badge(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#555")
    return (f"<span style='background:{colour};color:white;border-radius:3px;padding:0 5px;"
            f"font-size:11px'>{html.escape(status)}</span>")


def _plain_box(text_fn):
    """A VBox whose text/plain form is our summary, not ``VBox(children=...)`` (for nbconvert
    and other non-widget renderings of the saved output)."""
    import ipywidgets

    class SummaryBox(ipywidgets.VBox):
        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            if isinstance(data, tuple):
                data[0]["text/plain"] = text_fn()
            elif isinstance(data, dict):
                data["text/plain"] = text_fn()
            return data
    return SummaryBox


class CallView:
    """One call: appears once it has run ``CALL_VIEW_AFTER_S`` (or at once with ``show=True``).

    ``echo``: a call that ends before its view appears (``show=None``) prints its handler's
    last ``ECHO_LINES`` lines where the caller's prints go (see :meth:`_echo`)."""

    def __init__(self, fut, show: bool | None = None, echo: bool = True):
        self.fut = fut
        self.show = show
        self.widgets = widget_frontend()
        self.ctx = contextvars.copy_context()
        self.created = time.monotonic()
        self.tail = LogTail()
        self.shown = False
        self._drawn = None
        self._text_seen = 0
        self._lock = threading.Lock()  # the display thread and the caller both redraw
        #: the handler's last lines ``(stream, line)`` and how many it printed, for a call that
        #: ends before its view appears (show=None): printed then, see :meth:`close`
        self.echo: collections.deque = collections.deque(maxlen=ECHO_LINES)
        self.echo_total = 0
        self.echoes = echo and show is None
        fut.add_observer(self._on_log)
        if show is not False:
            ticker.add(self)

    def _on_log(self, fut, lines, skipped) -> None:
        own = [(stream, line) for _, stream, line in lines if stream != "platform"]
        self.tail.add([line for _, line in own], "", skipped)
        if self.echoes and not self.shown:
            self.echo.extend(own)
            self.echo_total += len(own) + skipped

    def _text(self) -> str:
        fut = self.fut
        head = f"{fut.function} {fut.accepted_request_id or ''} {fut.status}"
        rep = report_text(fut.report)
        return head + (f"\n{rep}" if rep else "")

    def redraw(self) -> None:
        with self._lock:
            if not self.shown:
                if not (self.show or time.monotonic() - self.created >= CALL_VIEW_AFTER_S):
                    return
                self.shown = True
                self.ctx.run(self._open)
            self.ctx.run(self._draw)

    def _open(self) -> None:
        if self.widgets:
            import ipywidgets
            from IPython.display import display
            self.header = ipywidgets.HTML()
            self.logs = ipywidgets.HTML()
            self.footer = ipywidgets.HTML()
            self.box = _plain_box(self._text)([self.header, self.logs, self.footer])
            self.handle = display(self.box, display_id=True)
        else:
            print(f"[{self.fut.function}] {self.fut.accepted_request_id or ''} running…", file=sys.stderr)

    def _draw(self) -> None:
        fut = self.fut
        started = fut.started or self.created
        elapsed = (fut.ended or time.monotonic()) - started
        if self.widgets:
            header = (f"<b>{html.escape(fut.function)}</b> {_badge(fut.status)} "
                      f"<span style='color:#888'>{fmt_seconds(elapsed)} · "
                      f"{html.escape(fut.accepted_request_id or '')}</span>")
            if header != getattr(self, "_header", None):
                self.header.value = self._header = header
            drawn = (self.tail.version, fut.done())
            if drawn != self._drawn:
                self._drawn = drawn
                lines, hidden = self.tail.snapshot()
                self.logs.value = _pre(lines, hidden, "all are kept: faas.Invocation.from_id(...).logs",
                                       ended=fut.done())
            if fut.done():
                footer = report_text(fut.report)
                footer += _error_pre(None if fut.cancelled() else fut.exception())
                self.footer.value = footer
        else:
            self._text_seen = _print_new_lines(self.tail, self._text_seen, f"[{fut.function}] ")
            if fut.done():
                report = report_text(fut.report)  # none for an end it did not measure (a server stop)
                print(f"[{fut.function}] {fut.status} in {fmt_seconds(elapsed)}"
                      + (f" · {report}" if report else ""), file=sys.stderr)

    def close(self) -> None:
        """The call ended (or the caller stopped waiting): last redraw, stop updating."""
        ticker.remove(self)
        if self.show is False:
            return
        if self.echoes and not self.shown:
            self._echo()
        if self.show or self.shown:
            self.redraw()
            if self.shown and self.widgets:
                with self._lock:
                    self.ctx.run(self.handle.update, self.box)


    def _echo(self) -> None:
        """Print a short call's handler lines where the caller's prints go (the cell), stdout
        lines to stdout and stderr lines to stderr: with no view, they would be seen nowhere."""
        lines = list(self.echo)
        if not lines and not self.echo_total:
            return
        hidden = self.echo_total - len(lines)
        if hidden:
            print(f"[{self.fut.function}] … {hidden:,} earlier lines not shown; all are kept: "
                  f"faas.Invocation.from_id({self.fut.accepted_request_id!r}).logs", file=sys.stderr)
        out = [line for stream, line in lines if stream != "stderr"]
        err = [line for stream, line in lines if stream == "stderr"]
        if out and not err:  # the usual case: one write
            sys.stdout.write("\n".join(out) + "\n")
            return
        for stream, line in lines:
            print(line, file=sys.stderr if stream == "stderr" else sys.stdout)


class MapView:
    """The progress of a fan-out: counts, rate, ETA, cost, tagged logs, per-item detail, Cancel."""

    def __init__(self, function: str, total: int | None, cancel, show: bool | None = None,
                 kind: str = "map"):
        self.progress = MapProgress(function, total)
        self.kind = kind  # what the title calls it: map, starmap, imap
        self.cancel_fn = cancel
        self.cancelled = False
        self.show = show
        self.widgets = widget_frontend()
        self.ctx = contextvars.copy_context()
        self._drawn_logs = None
        self._last_text = time.monotonic()  # the first progress line after TEXT_PROGRESS_EVERY_S
        self._text_seen = 0
        self._lock = threading.Lock()  # the display thread and the caller both redraw
        if show is not False:
            self.ctx.run(self._open)
            ticker.add(self)

    def add(self, fut) -> None:
        self.progress.add(fut)

    # ---- widget ----------------------------------------------------------------------------

    def _open(self) -> None:
        if not self.widgets:
            return
        import ipywidgets
        from IPython.display import display

        from .subshell import route_off_main_thread
        self.title = ipywidgets.HTML()
        self.bar = ipywidgets.IntProgress(value=0, min=0, max=max(1, self.progress.total or 1),
                                          layout=ipywidgets.Layout(width="100%"))
        self.counts = ipywidgets.HTML()
        self.cancel_button = ipywidgets.Button(description="Cancel", button_style="danger",
                                               icon="stop", tooltip="cancel every queued and running item")
        self.failed_button = ipywidgets.Button(description="Failed (0)", disabled=True,
                                               tooltip="show the failed items")
        self.item = ipywidgets.BoundedIntText(value=0, min=0, max=0, description="item",
                                              layout=ipywidgets.Layout(width="11em"))
        self.item_button = ipywidgets.Button(description="Show", tooltip="show this item")
        self.failed_pick = ipywidgets.Dropdown(options=[], description="failed",
                                               layout=ipywidgets.Layout(display="none", width="16em"))
        self.logs = ipywidgets.HTML()
        self.detail = ipywidgets.HTML()
        self.cancel_button.on_click(lambda _: self.cancel())
        self.failed_button.on_click(lambda _: self._show_failed())
        self.item_button.on_click(lambda _: self.show_item(self.item.value))
        self.failed_pick.observe(lambda ch: ch["new"] is not None and self.show_item(ch["new"]), "value")
        controls = ipywidgets.HBox([self.cancel_button, self.failed_button, self.failed_pick,
                                    self.item, self.item_button])
        for w in (self.cancel_button, self.failed_button, self.item, self.item_button, self.failed_pick):
            route_off_main_thread(w)
        self.box = _plain_box(self.progress.summary)(
            [self.title, self.bar, self.counts, controls, self.logs, self.detail])
        self.handle = display(self.box, display_id=True)
        self._draw_widget()

    def _draw_widget(self) -> None:
        s = self.progress.stats()
        p = self.progress
        total = s["total"] if s["total"] is not None else s["submitted"]
        state = "cancelled" if self.cancelled else ("done" if p.ended else "running")
        title = f"<b>{html.escape(p.function)}</b>.{self.kind} · {total:,} items · {state}"
        if title != getattr(self, "_title", None):
            self.title.value = self._title = title
        self.bar.max = max(1, total)
        self.bar.value = s["done"]
        self.bar.bar_style = "danger" if s["failed"] else ("success" if p.ended else "info")
        eta = f" · ETA {fmt_seconds(s['eta'])}" if s["eta"] is not None else ""
        counts = " · ".join(
            f"<span style='color:{_STATUS_COLOURS.get(k, '#555')}'>{k} <b>{s[k]:,}</b></span>"
            for k in ("queued", "running", "succeeded", "failed", "retrying", "cancelled"))
        self.counts.value = (f"{counts}<br>{s['rate']:,.0f} items/s · elapsed {fmt_seconds(s['elapsed'])}"
                             f"{eta} · {s['gb_seconds']:.3f} GB-s ≈ ${s['cost_usd']:.6f}")
        self.item.max = max(0, s["submitted"] - 1)
        if len(p.failed) != getattr(self, "_failed_n", 0):
            self._failed_n = len(p.failed)
            self.failed_button.description = f"Failed ({len(p.failed):,})"
            self.failed_button.disabled = not p.failed
            if self.failed_pick.layout.display != "none":
                self._fill_failed()
        ended = p.ended is not None
        if (p.logs.version, ended) != self._drawn_logs:
            self._drawn_logs = (p.logs.version, ended)
            lines, hidden = p.logs.snapshot()
            self.logs.value = _pre(lines, hidden, "all are kept; pick an item to see its own", ended)
        if (ended or self.cancelled) and not self.cancel_button.disabled:
            # Nothing left to cancel: greyed out, not a live red button.
            self.cancel_button.disabled = True
            self.cancel_button.button_style = ""

    def _fill_failed(self) -> None:
        failed = sorted(self.progress.failed)[:1000]
        self.failed_pick.options = [(f"item {i}", i) for i in failed]

    def _show_failed(self) -> None:
        self._fill_failed()
        self.failed_pick.layout.display = ""
        if self.progress.failed:
            first = min(self.progress.failed)
            if self.failed_pick.value == first:
                self.show_item(first)
            self.failed_pick.value = first

    def show_item(self, index: int) -> None:
        """Fill the detail pane with one item: input, status, every log line, REPORT, traceback."""
        self.detail.value = self.item_html(index)

    def item_html(self, index: int) -> str:
        futures = self.progress.futures
        if not 0 <= index < len(futures):
            return f"<i>no item {index}: the map has {len(futures)} items so far</i>"
        fut = futures[index]
        rid = fut.accepted_request_id
        try:
            lines = fut.stored_logs()
        except Exception as exc:  # noqa: BLE001 - show what we can
            lines = [f"(could not load the stored logs: {exc})"]
        exc = fut.exception() if fut.done() and not fut.cancelled() else None
        parts = [f"<b>item {index}</b> {_badge(fut.status)} <code>{html.escape(rid or '')}</code>",
                 f"<div><b>input</b> <code>{html.escape(fut.input_summary)}</code></div>"]
        if fut.report is not None:
            parts.append(f"<div><b>REPORT</b> {html.escape(report_text(fut.report))}</div>")
        parts.append(_pre(lines[-500:], max(0, len(lines) - 500), "see faas.Invocation.from_id",
                          ended=fut.done()))
        parts.append(_error_pre(exc))
        return "".join(parts)

    # ---- text ------------------------------------------------------------------------------

    def _draw_text(self, final: bool = False) -> None:
        p = self.progress
        self._text_seen = _print_new_lines(p.logs, self._text_seen)
        now = time.monotonic()
        if final or now - self._last_text >= TEXT_PROGRESS_EVERY_S:
            self._last_text = now
            print(p.summary(), file=sys.stderr)

    # ---- lifecycle ---------------------------------------------------------------------------

    def redraw(self, final: bool = False) -> None:
        with self._lock:
            if self.widgets:
                self.ctx.run(self._draw_widget)
            else:
                self._draw_text(final)

    def cancel(self) -> None:
        """What Ctrl-C does: drop queued items, kill running ones; the map raises Cancelled."""
        self.cancelled = True
        self.cancel_fn()

    def close(self) -> None:
        ticker.remove(self)
        if self.progress.ended is None:
            self.progress.ended = time.monotonic()
        if self.show is False:
            return
        self.redraw(final=True)
        if self.widgets:
            with self._lock:
                self.ctx.run(self.handle.update, self.box)
