/**
 * The panel's state: functions, the invocation list, the selected invocation and the
 * metrics, kept current from REST reads and the event feed. No DOM here: views listen to
 * `changed` and draw; the feed's events come in through `applyEvents`.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { APIError, IFaaSAPI } from './handler';
import {
  FeedEvent,
  ICursor,
  IFunctionStats,
  IInvocation,
  IInvokeResult,
  ILogLine,
  IMetrics,
  InvocationStatus,
  TERMINAL
} from './types';

export type Change = 'functions' | 'invocations' | 'detail' | 'metrics' | 'invoke' | 'status';

export interface IFilter {
  function?: string;
  status?: InvocationStatus;
}

export interface IDetail {
  invocation: IInvocation;
  logs: ILogLine[];
  /** Lines in the store beyond what is shown (the list stops at MAX_LOG_LINES). */
  hiddenLines: number;
  /** Lines the feed did not push live (rate limit); re-reading the logs shows them. */
  droppedLive: number;
}

export interface IInvokeOutcome {
  name: string;
  pending: boolean;
  result?: IInvokeResult;
  error?: string;
}

export const PAGE_SIZE = 50;
/** Rows the live list keeps; older rows are reached again by paging. */
export const MAX_ROWS = 500;
export const MAX_LOG_LINES = 5000;
/** The function table and charts are re-read at most this often while events stream. */
export const REFRESH_INTERVAL_MS = 2000;
/** Longer than the server's log flush interval (0.25 s). */
export const BACKFILL_DELAY_MS = 800;

/** The metrics windows the panel offers, in minutes, shortest first. */
export const METRICS_WINDOWS = [15, 60, 360, 1440];

/**
 * The shortest window that holds every invocation of a series (the longest when none
 * does, the shortest when there are none): a function deployed a minute ago is charted
 * over 15 minutes, not as a sliver at the right edge of an hour.
 */
export function windowFor(series: IMetrics): number {
  const first = series.invocations.findIndex(n => n > 0);
  if (first < 0) {
    return METRICS_WINDOWS[0];
  }
  const span = series.invocations.length - first; // minutes from its first busy one to now
  return METRICS_WINDOWS.find(w => w >= span) ?? METRICS_WINDOWS[METRICS_WINDOWS.length - 1];
}

/** The last `minutes` of a series (its buckets are whole minutes ending now, whatever its window). */
export function lastMinutes(series: IMetrics, minutes: number): IMetrics {
  const skip = Math.max(0, series.timestamps.length - minutes);
  const cut = <T>(values: T[]) => values.slice(skip);
  return {
    ...series,
    start: series.timestamps[skip] ?? series.start,
    timestamps: cut(series.timestamps),
    invocations: cut(series.invocations),
    errors: cut(series.errors),
    throttles: cut(series.throttles),
    concurrent_executions: cut(series.concurrent_executions),
    duration_p50_ms: cut(series.duration_p50_ms),
    duration_p90_ms: cut(series.duration_p90_ms),
    duration_p99_ms: cut(series.duration_p99_ms)
  };
}

/** The feed pushes at most this many lines of an invocation per batch (api/events.py). */
const MAX_LIVE_BATCH = 200;

/** What makes a log line the same line, read from the store or pushed live. */
export function logKey(line: ILogLine): string {
  return `${line.ts}\u0000${line.line}`;
}

/** Stored and live lines as one list in time order, each line once (same ts and text). */
export function mergeLogs(stored: ILogLine[], live: ILogLine[]): ILogLine[] {
  const seen = new Set<string>();
  const out: ILogLine[] = [];
  for (const line of [...stored, ...live]) {
    const key = logKey(line);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(line);
    }
  }
  // Stable: lines with the same timestamp keep the order they were printed in.
  return out.sort((a, b) => a.ts - b.ts).slice(0, MAX_LOG_LINES);
}

function versionAdvice(panel: string, other: string): string {
  return (
    `This Lambda panel is version ${panel}, but ${other}: jupyter_faas was upgraded while ` +
    'JupyterLab was running. Restart JupyterLab and reload this page. If they still differ, ' +
    "reinstall jupyter_faas in JupyterLab's environment (pip install --force-reinstall jupyter_faas)."
  );
}

function newer(a: IInvocation, b: IInvocation): boolean {
  return a.created_at > b.created_at || (a.created_at === b.created_at && a.request_id > b.request_id);
}

function message(error: unknown): string {
  if (error instanceof APIError) {
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

export class FaaSModel {
  constructor(api: IFaaSAPI) {
    this._api = api;
  }

  get changed(): ISignal<this, Change> {
    return this._changed;
  }
  get functions(): IFunctionStats[] {
    return this._functions;
  }
  get invocations(): IInvocation[] {
    return this._invocations;
  }
  get hasMore(): boolean {
    return this._next !== null;
  }
  get filter(): IFilter {
    return this._filter;
  }
  get detail(): IDetail | null {
    return this._detail;
  }
  get metrics(): IMetrics | null {
    return this._metrics;
  }
  get metricsFunction(): string | null {
    return this._metricsFunction;
  }
  get metricsMinutes(): number {
    return this._metricsMinutes;
  }
  get invokeOutcome(): IInvokeOutcome | null {
    return this._invokeOutcome;
  }
  /** What to do when this panel and the Python side are different versions; null when they agree. */
  get versionProblem(): string | null {
    return this._versionProblem;
  }
  /** The last error, for the status line; null when the last action worked. */
  get error(): string | null {
    return this._error;
  }
  get connected(): boolean {
    return this._connected;
  }
  /** Request ids whose log lines the feed should push (the selected one, while it runs). */
  get watched(): string[] {
    const d = this._detail;
    return d && !TERMINAL.has(d.invocation.status) ? [d.invocation.request_id] : [];
  }

  /** Everything, from the server: at start and after the feed reconnects (events were missed). */
  async reload(): Promise<void> {
    await Promise.all([this.refreshFunctions(), this.loadInvocations()]);
    if (this._detail) {
      await this.select(this._detail.invocation.request_id);
    }
    await this.refreshMetrics();
  }

  /**
   * This panel's version against the package the Jupyter server runs and the FaaS server's.
   * After an upgrade the browser loads the new panel while JupyterLab's server (until
   * restarted) or a background FaaS server (until stopped) still runs the old code, and
   * requests fail in ways that say nothing: this names the versions and what to do.
   */
  async checkVersions(panel: string): Promise<void> {
    let problem: string | null = null;
    try {
      const v = await this._api.versions();
      if (v.extension !== panel) {
        problem = versionAdvice(panel, `JupyterLab's server runs jupyter_faas ${v.extension}`);
      } else if (v.server !== null && v.server !== panel) {
        problem =
          `The jupyter_faas server running is version ${v.server}, but this panel and the package ` +
          `are ${panel}. Stop the old server with "jupyter faas stop"; the next call (or this panel) ` +
          'starts the new one.';
      }
    } catch (error) {
      if (error instanceof APIError && error.status === 404) {
        // A Jupyter server extension older than this endpoint.
        problem = versionAdvice(panel, "JupyterLab's server runs an older jupyter_faas");
      } else {
        this._error = message(error);
      }
    }
    this._versionProblem = problem;
    this._changed.emit('status');
  }

  setConnected(connected: boolean): void {
    if (connected !== this._connected) {
      this._connected = connected;
      this._changed.emit('status');
    }
  }

  async refreshFunctions(): Promise<void> {
    await this._guard(async () => {
      const reply = await this._api.functionStats();
      this._functions = reply.functions;
      this._changed.emit('functions');
    });
  }

  async setFilter(filter: IFilter): Promise<void> {
    this._filter = { ...filter };
    await this.loadInvocations();
  }

  /** The newest page under the current filter, replacing the list. */
  async loadInvocations(): Promise<void> {
    const token = ++this._listToken;
    await this._guard(async () => {
      const page = await this._api.invocations({ ...this._filter, limit: PAGE_SIZE });
      if (token !== this._listToken) {
        return; // a newer filter won
      }
      this._invocations = page.invocations;
      this._next = page.next;
      this._changed.emit('invocations');
    });
  }

  /** The next (older) page, by keyset cursor, appended. */
  async loadMore(): Promise<void> {
    if (!this._next) {
      return;
    }
    const token = this._listToken;
    await this._guard(async () => {
      const page = await this._api.invocations({
        ...this._filter,
        limit: PAGE_SIZE,
        cursor: this._next
      });
      if (token !== this._listToken) {
        return;
      }
      const known = new Set(this._invocations.map(i => i.request_id));
      this._invocations = this._invocations.concat(
        page.invocations.filter(i => !known.has(i.request_id))
      );
      this._next = page.next;
      this._changed.emit('invocations');
    });
  }

  /** Show one invocation: its row, then every stored log line; live lines follow by feed. */
  async select(requestId: string | null): Promise<void> {
    if (requestId === null) {
      this._detail = null;
      this._changed.emit('detail');
      return;
    }
    const token = ++this._detailToken;
    const current = this._invocations.find(i => i.request_id === requestId);
    // Show the row at once (the panel then asks the feed for its live lines) and read the
    // stored lines; lines seen both ways are kept once, and backfillLogs closes the gap.
    this._detail = {
      invocation: current ?? ({ request_id: requestId } as IInvocation),
      logs: [],
      hiddenLines: 0,
      droppedLive: 0
    };
    this._changed.emit('detail');
    await this._guard(async () => {
      const [invocation, stored] = await Promise.all([
        this._api.invocation(requestId),
        this._api.logs(requestId, 0, MAX_LOG_LINES)
      ]);
      if (token !== this._detailToken || !this._detail) {
        return;
      }
      this._detail = {
        invocation: { ...this._detail.invocation, ...invocation },
        logs: mergeLogs(stored.logs, this._detail.logs),
        hiddenLines: stored.logs.length >= MAX_LOG_LINES ? 1 : 0,
        droppedLive: this._detail.droppedLive
      };
      if (!TERMINAL.has(invocation.status)) {
        // Lines printed after the read but before the feed had the watch are in neither:
        // once the server has flushed them (every 0.25 s), read the store again.
        this._scheduleBackfill();
      }
      this._changed.emit('detail');
    });
  }

  /** Re-read the selected invocation's stored lines and fold in any the feed did not push. */
  async backfillLogs(): Promise<void> {
    const d = this._detail;
    if (!d) {
      return;
    }
    const requestId = d.invocation.request_id;
    const token = this._detailToken;
    await this._guard(async () => {
      const stored = await this._api.logs(requestId, 0, MAX_LOG_LINES);
      if (token !== this._detailToken || !this._detail) {
        return;
      }
      const logs = mergeLogs(stored.logs, this._detail.logs);
      // Whatever the feed dropped is now shown, or beyond the list's cap (hiddenLines).
      const complete = stored.logs.length < MAX_LOG_LINES;
      this._detail = {
        ...this._detail,
        logs,
        droppedLive: complete ? 0 : this._detail.droppedLive,
        hiddenLines: complete ? 0 : Math.max(1, this._detail.hiddenLines)
      };
      this._changed.emit('detail');
    });
  }

  /** Chart a function over the window its invocations need (see windowFor). */
  async openMetrics(name: string): Promise<void> {
    const token = ++this._metricsToken;
    this._metricsFunction = name;
    this._opening = token;
    this._changed.emit('metrics');
    await this._guard(async () => {
      // One read of the longest window; the chosen window is its tail.
      const longest = METRICS_WINDOWS[METRICS_WINDOWS.length - 1];
      const day = await this._api.metrics(name, longest);
      if (token === this._metricsToken) {
        this._metricsMinutes = windowFor(day);
        this._metrics = lastMinutes(day, this._metricsMinutes);
        this._changed.emit('metrics');
      }
    });
    if (this._opening === token) {
      this._opening = null;
    }
  }

  /**
   * Re-read the charted function over its window (events came, or the feed reconnected).
   * An open still choosing its window is left alone: its answer is as fresh, and a re-read
   * over the previous window would overtake it.
   */
  async refreshMetrics(): Promise<void> {
    if (this._metricsFunction && this._opening === null) {
      await this.loadMetrics(this._metricsFunction, this._metricsMinutes);
    }
  }

  /** Chart a function over the window the user chose (and re-read it as events come). */
  async loadMetrics(name: string, minutes: number): Promise<void> {
    const token = ++this._metricsToken;
    this._metricsFunction = name;
    this._metricsMinutes = minutes;
    this._changed.emit('metrics'); // the choice shows at once; the series follow
    await this._guard(async () => {
      const metrics = await this._api.metrics(name, minutes);
      if (token === this._metricsToken) {
        this._metrics = metrics;
        this._changed.emit('metrics');
      }
    });
  }

  /** Invoke `name` with a JSON test event (checked here first, so a typo is named at once). */
  async invoke(name: string, eventText: string): Promise<void> {
    const text = eventText.trim() === '' ? '{}' : eventText;
    try {
      JSON.parse(text);
    } catch (error) {
      this._invokeOutcome = { name, pending: false, error: `The test event is not valid JSON: ${message(error)}` };
      this._changed.emit('invoke');
      return;
    }
    this._invokeOutcome = { name, pending: true };
    this._changed.emit('invoke');
    try {
      const result = await this._api.invoke(name, text);
      this._invokeOutcome = { name, pending: false, result };
    } catch (error) {
      this._invokeOutcome = { name, pending: false, error: message(error) };
    }
    this._changed.emit('invoke');
  }

  async cancel(requestId: string): Promise<void> {
    await this._guard(() => this._api.cancel(requestId));
  }

  async deleteFunction(name: string): Promise<void> {
    await this._guard(async () => {
      await this._api.deleteFunction(name);
      this._functions = this._functions.filter(f => f.name !== name);
      this._changed.emit('functions');
      if (this._metricsFunction === name) {
        this._metricsFunction = null;
        this._metrics = null;
        this._changed.emit('metrics');
      }
    });
  }

  /** Fold a batch of feed events into the state. */
  applyEvents(events: FeedEvent[]): void {
    let list = false;
    let detail = false;
    let stale = false;
    for (const event of events) {
      switch (event.type) {
        case 'function':
          stale = true;
          break;
        case 'overflow':
          // Too much changed at once to apply one by one: re-read the page.
          void this.loadInvocations();
          stale = true;
          break;
        case 'invocation': {
          const { type: _type, ...fields } = event;
          list = this._mergeInvocation(fields) || list;
          if (this._detail && this._detail.invocation.request_id === fields.request_id) {
            this._detail = {
              ...this._detail,
              invocation: { ...this._detail.invocation, ...fields }
            };
            detail = true;
            if (TERMINAL.has(fields.status) && this._detail.droppedLive > 0) {
              this._scheduleBackfill(); // it ended: show what came too fast to push
            }
          }
          // An end changes the figures; a start changes what a provisioned function has in use.
          if (TERMINAL.has(fields.status) || (fields.status === 'running' && this._isProvisioned(fields.function))) {
            stale = true;
          }
          break;
        }
        case 'log': {
          const d = this._detail;
          if (d && d.invocation.request_id === event.request_id) {
            const room = MAX_LOG_LINES - d.logs.length;
            // A line pushed live may already be there, read with the stored lines when the
            // detail opened (the feed had the watch before the read finished): keep it once.
            const recent = new Set(d.logs.slice(-2 * MAX_LIVE_BATCH).map(logKey));
            const lines = event.lines
              .map(([ts, stream, line]) => ({ ts, stream, line }))
              .filter(line => !recent.has(logKey(line)));
            d.logs.push(...lines.slice(0, Math.max(0, room)));
            d.droppedLive += event.dropped;
            d.hiddenLines += Math.max(0, lines.length - Math.max(0, room));
            detail = true;
          }
          break;
        }
      }
    }
    if (list) {
      this._changed.emit('invocations');
    }
    if (detail) {
      this._changed.emit('detail');
    }
    if (stale) {
      this._scheduleRefresh();
    }
  }

  dispose(): void {
    for (const timer of [this._refreshTimer, this._backfillTimer]) {
      if (timer !== null) {
        clearTimeout(timer);
      }
    }
    Signal.clearData(this);
  }

  /** Update a listed invocation, or insert a new one where it belongs; true if the list changed. */
  private _mergeInvocation(fields: IInvocation): boolean {
    const i = this._invocations.findIndex(r => r.request_id === fields.request_id);
    const defined = Object.fromEntries(
      Object.entries(fields).filter(([, v]) => v !== undefined && v !== null)
    ) as Partial<IInvocation>;
    if (i >= 0) {
      const merged = { ...this._invocations[i], ...defined };
      if (this._matches(merged)) {
        this._invocations[i] = merged;
      } else {
        this._invocations.splice(i, 1); // e.g. it left the 'running' filter
      }
      return true;
    }
    if (!this._matches(fields)) {
      return false;
    }
    // Insert only inside the loaded range: an older row belongs to a page not read yet.
    const last = this._invocations[this._invocations.length - 1];
    if (this._next !== null && last && !newer(fields, last)) {
      return false;
    }
    let at = this._invocations.findIndex(r => newer(fields, r));
    if (at < 0) {
      at = this._invocations.length;
    }
    this._invocations.splice(at, 0, { ...fields });
    if (this._invocations.length > MAX_ROWS) {
      this._invocations.length = MAX_ROWS;
      const tail = this._invocations[MAX_ROWS - 1];
      this._next = { before: tail.created_at, before_id: tail.request_id };
    }
    return true;
  }

  private _isProvisioned(name: string): boolean {
    return this._functions.some(f => f.name === name && (f.provisioned ?? []).length > 0);
  }

  private _matches(inv: IInvocation): boolean {
    const f = this._filter;
    return (!f.function || inv.function === f.function) && (!f.status || inv.status === f.status);
  }

  private _scheduleBackfill(): void {
    if (this._backfillTimer !== null) {
      clearTimeout(this._backfillTimer);
    }
    this._backfillTimer = setTimeout(() => {
      this._backfillTimer = null;
      void this.backfillLogs();
    }, BACKFILL_DELAY_MS);
  }

  private _scheduleRefresh(): void {
    if (this._refreshTimer !== null) {
      return;
    }
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      void this.refreshFunctions();
      void this.refreshMetrics();
    }, REFRESH_INTERVAL_MS);
  }

  private async _guard(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
      if (this._error !== null) {
        this._error = null;
        this._changed.emit('status');
      }
    } catch (error) {
      this._error = message(error);
      this._changed.emit('status');
    }
  }

  private _api: IFaaSAPI;
  private _changed = new Signal<this, Change>(this);
  private _functions: IFunctionStats[] = [];
  private _invocations: IInvocation[] = [];
  private _next: ICursor | null = null;
  private _filter: IFilter = {};
  private _listToken = 0;
  private _detail: IDetail | null = null;
  private _detailToken = 0;
  private _metrics: IMetrics | null = null;
  private _metricsFunction: string | null = null;
  private _metricsMinutes = METRICS_WINDOWS[1];
  private _metricsToken = 0;
  /** The token of an openMetrics still waiting for its series. */
  private _opening: number | null = null;
  private _invokeOutcome: IInvokeOutcome | null = null;
  private _error: string | null = null;
  private _versionProblem: string | null = null;
  private _connected = false;
  private _refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private _backfillTimer: ReturnType<typeof setTimeout> | null = null;
}
