/**
 * The model against an in-memory API: paging, filters, live events, logs, invoke checks.
 * (The real server is exercised end to end by tests/test_panel_e2e.py.)
 */
import { IFaaSAPI } from '../src/handler';
import { FaaSModel, MAX_ROWS, PAGE_SIZE, REFRESH_INTERVAL_MS, windowFor } from '../src/model';
import { cost, duration, reportLine, shortId } from '../src/format';
import { FeedEvent, IFunctionStats, IInvocation, IInvocationQuery, ILogLine, IMetrics } from '../src/types';

function inv(i: number, fields: Partial<IInvocation> = {}): IInvocation {
  return {
    request_id: `r${String(i).padStart(5, '0')}`,
    function: i % 2 ? 'odd' : 'even',
    version: 1,
    status: 'succeeded',
    created_at: 1000 + i,
    ...fields
  };
}

/** A store of invocations answering like the server (newest first, keyset cursor). */
class MemoryAPI implements IFaaSAPI {
  rows: IInvocation[] = [];
  logLines: Record<string, ILogLine[]> = {};
  invoked: [string, string][] = [];
  queries: IInvocationQuery[] = [];

  versionsReply = { extension: '1.0.0', server: '1.0.0' as string | null };
  async versions() {
    return this.versionsReply;
  }
  async functionStats() {
    return { functions: [] as IFunctionStats[], prices: { per_gb_second: 0, per_request: 0 } };
  }
  async invocations(q: IInvocationQuery) {
    this.queries.push(q);
    let rows = [...this.rows].sort((a, b) =>
      b.created_at - a.created_at || (b.request_id > a.request_id ? 1 : -1)
    );
    rows = rows.filter(r => (!q.function || r.function === q.function) && (!q.status || r.status === q.status));
    if (q.cursor) {
      const c = q.cursor;
      rows = rows.filter(r => r.created_at < c.before || (r.created_at === c.before && r.request_id < c.before_id));
    }
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      invocations: page,
      next: page.length === q.limit ? { before: last.created_at, before_id: last.request_id } : null
    };
  }
  async invocation(id: string) {
    const row = this.rows.find(r => r.request_id === id);
    if (!row) {
      throw new Error(`no invocation ${id}`);
    }
    return row;
  }
  async logs(id: string) {
    return { logs: this.logLines[id] ?? [] };
  }
  async metrics(name: string, minutes: number): Promise<IMetrics> {
    return {
      function: name, start: 0, period_s: 60, timestamps: new Array(minutes).fill(0), invocations: [],
      errors: [], throttles: [], concurrent_executions: [], duration_p50_ms: [], duration_p90_ms: [], duration_p99_ms: []
    };
  }
  async invoke(name: string, event: string) {
    this.invoked.push([name, event]);
    return { request_id: 'new', status: 'succeeded' as const, result: 42, error: null, logs: [] };
  }
  async cancel() {
    return { cancelled: true };
  }
  async deleteFunction() {}
}

function event(i: number, fields: Partial<IInvocation> = {}): FeedEvent {
  return { type: 'invocation', ...inv(i, fields) };
}

describe('FaaSModel', () => {
  let api: MemoryAPI;
  let model: FaaSModel;
  beforeEach(() => {
    api = new MemoryAPI();
    api.rows = Array.from({ length: 120 }, (_, i) => inv(i));
    model = new FaaSModel(api);
  });
  afterEach(() => model.dispose());

  it('pages newest first with the keyset cursor and no duplicates', async () => {
    await model.loadInvocations();
    expect(model.invocations).toHaveLength(PAGE_SIZE);
    expect(model.invocations[0].request_id).toBe('r00119');
    await model.loadMore();
    await model.loadMore();
    const ids = model.invocations.map(r => r.request_id);
    expect(ids).toHaveLength(120);
    expect(new Set(ids).size).toBe(120);
    expect(model.hasMore).toBe(false);
    expect(api.queries[1].cursor).toEqual({ before: 1070, before_id: 'r00070' });
  });

  it('filters on the server and keeps live rows to the filter', async () => {
    await model.setFilter({ function: 'odd' });
    expect(api.queries[0]).toMatchObject({ function: 'odd', limit: PAGE_SIZE });
    expect(model.invocations.every(r => r.function === 'odd')).toBe(true);
    model.applyEvents([event(200), event(201, { status: 'running' })]);
    expect(model.invocations[0].request_id).toBe('r00201'); // odd: shown
    expect(model.invocations.some(r => r.request_id === 'r00200')).toBe(false); // even: not
  });

  it('inserts a new invocation on top and merges later events into it', async () => {
    await model.loadInvocations();
    const changes: string[] = [];
    model.changed.connect((_, c) => changes.push(c));
    model.applyEvents([event(500, { status: 'queued', started_at: null })]);
    expect(model.invocations[0]).toMatchObject({ request_id: 'r00500', status: 'queued' });
    model.applyEvents([event(500, { status: 'running', started_at: 1501 })]);
    model.applyEvents([event(500, { status: 'succeeded', duration_ms: 12.5, max_memory_used_mb: 30 })]);
    expect(model.invocations[0]).toMatchObject({ status: 'succeeded', started_at: 1501, duration_ms: 12.5 });
    expect(model.invocations.filter(r => r.request_id === 'r00500')).toHaveLength(1);
    expect(changes.filter(c => c === 'invocations')).toHaveLength(3);
  });

  it('drops a row that leaves the status filter, and ignores rows older than the loaded page', async () => {
    api.rows.push(inv(300, { status: 'running' }));
    await model.setFilter({ status: 'running' });
    expect(model.invocations.map(r => r.request_id)).toEqual(['r00300']);
    model.applyEvents([event(300, { status: 'succeeded' })]);
    expect(model.invocations).toHaveLength(0);

    await model.setFilter({});
    model.applyEvents([event(5, { request_id: 'old-one', created_at: 1 })]);
    expect(model.invocations.some(r => r.request_id === 'old-one')).toBe(false);
  });

  it('keeps at most MAX_ROWS live rows and pages on from the trimmed tail', async () => {
    await model.loadInvocations();
    model.applyEvents(Array.from({ length: MAX_ROWS }, (_, i) => event(1000 + i)));
    expect(model.invocations).toHaveLength(MAX_ROWS);
    expect(model.hasMore).toBe(true);
  });

  it('shows stored log lines then appends live ones without duplicates', async () => {
    const rid = 'r00010';
    api.rows[10] = inv(10, { status: 'running' });
    api.logLines[rid] = [
      { id: 1, ts: 5, stream: 'platform', line: 'START' },
      { id: 2, ts: 6, stream: 'stdout', line: 'one' }
    ];
    await model.loadInvocations();
    await model.select(rid);
    expect(model.watched).toEqual([rid]);
    expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'one']);
    model.applyEvents([{ type: 'log', request_id: rid, function: 'even', lines: [[7, 'stdout', 'two']], dropped: 3 }]);
    expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'one', 'two']);
    expect(model.detail!.droppedLive).toBe(3);
    // Another invocation's lines are not this one's.
    model.applyEvents([{ type: 'log', request_id: 'r00011', function: 'odd', lines: [[8, 'stdout', 'x']], dropped: 0 }]);
    expect(model.detail!.logs).toHaveLength(3);
    model.applyEvents([event(10, { status: 'succeeded' })]);
    expect(model.detail!.invocation.status).toBe('succeeded');
    expect(model.watched).toEqual([]); // a finished invocation needs no live lines
  });

  it('keeps a line once when it was both read with the stored lines and then pushed live', async () => {
    const rid = 'r00014';
    api.rows[14] = inv(14, { status: 'running' });
    api.logLines[rid] = [
      { id: 1, ts: 5, stream: 'platform', line: 'START' },
      { id: 2, ts: 6, stream: 'stdout', line: 'tick 0' }
    ];
    await model.loadInvocations();
    await model.select(rid);
    // The feed had the watch before the read finished: it pushes 'tick 0' again, then 'tick 1'.
    model.applyEvents([{ type: 'log', request_id: rid, function: 'even',
      lines: [[6, 'stdout', 'tick 0'], [7, 'stdout', 'tick 1']], dropped: 0 }]);
    expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'tick 0', 'tick 1']);
  });

  it('fills the gap between the stored read and the first live line from the store', async () => {
    const rid = 'r00012';
    api.rows[12] = inv(12, { status: 'running' });
    api.logLines[rid] = [
      { id: 1, ts: 5, stream: 'platform', line: 'START' },
      { id: 2, ts: 6, stream: 'stdout', line: 'tick 0' }
    ];
    await model.select(rid);
    // 'tick 1' was printed before the watch reached the server and after the read...
    model.applyEvents([{ type: 'log', request_id: rid, function: 'even', lines: [[8, 'stdout', 'tick 2']], dropped: 0 }]);
    expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'tick 0', 'tick 2']);
    // ...and is in the store by the time the backfill reads it again.
    api.logLines[rid].push({ id: 3, ts: 7, stream: 'stdout', line: 'tick 1' }, { id: 4, ts: 8, stream: 'stdout', line: 'tick 2' });
    await model.backfillLogs();
    expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'tick 0', 'tick 1', 'tick 2']);
  });

  it('re-reads the logs when a watched invocation ends with lines the feed dropped', async () => {
    jest.useFakeTimers();
    try {
      const rid = 'r00014';
      api.rows[14] = inv(14, { status: 'running' });
      api.logLines[rid] = [{ id: 1, ts: 1, stream: 'platform', line: 'START' }];
      await model.select(rid);
      model.applyEvents([{ type: 'log', request_id: rid, function: 'even', lines: [[2, 'stdout', 'a']], dropped: 500 }]);
      expect(model.detail!.droppedLive).toBe(500);
      api.logLines[rid] = [{ id: 1, ts: 1, stream: 'platform', line: 'START' }, { id: 2, ts: 2, stream: 'stdout', line: 'a' },
        { id: 3, ts: 3, stream: 'stdout', line: 'b' }, { id: 4, ts: 4, stream: 'platform', line: 'REPORT RequestId: r00014' }];
      model.applyEvents([event(14, { status: 'succeeded' })]);
      await jest.runAllTimersAsync();
      expect(model.detail!.logs.map(l => l.line)).toEqual(['START', 'a', 'b', 'REPORT RequestId: r00014']);
      expect(model.detail!.droppedLive).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  it('checks the test event is JSON before invoking', async () => {
    await model.invoke('f', '{"a": ');
    expect(model.invokeOutcome!.error).toMatch(/not valid JSON/);
    expect(api.invoked).toHaveLength(0);
    await model.invoke('f', '  ');
    expect(api.invoked).toEqual([['f', '{}']]);
    expect(model.invokeOutcome).toMatchObject({ name: 'f', pending: false, result: { result: 42 } });
  });

  it('reports API failures on the status line and clears them when a call works', async () => {
    await model.select('missing');
    expect(model.error).toBe('no invocation missing');
    await model.loadInvocations();
    expect(model.error).toBeNull();
  });

  it('re-reads the list when the feed overflows', async () => {
    await model.loadInvocations();
    const before = api.queries.length;
    model.applyEvents([{ type: 'overflow', dropped: 900 }]);
    await new Promise(r => setTimeout(r, 0));
    expect(api.queries.length).toBe(before + 1);
  });
});

describe('versions', () => {
  it('says nothing when the panel, the package and the server agree', async () => {
    const model = new FaaSModel(new MemoryAPI());
    await model.checkVersions('1.0.0');
    expect(model.versionProblem).toBeNull();
  });

  it('names both versions and what to do when they differ', async () => {
    const api = new MemoryAPI();
    const model = new FaaSModel(api);
    api.versionsReply = { extension: '0.9.0', server: '0.9.0' };
    await model.checkVersions('1.0.0');
    expect(model.versionProblem).toMatch(/panel is version 1\.0\.0, but JupyterLab's server runs jupyter_faas 0\.9\.0/);
    expect(model.versionProblem).toMatch(/Restart JupyterLab/);
    api.versionsReply = { extension: '1.0.0', server: '0.9.0' };
    await model.checkVersions('1.0.0');
    expect(model.versionProblem).toMatch(/server running is version 0\.9\.0.*jupyter faas stop/);
  });
});

describe('metrics window', () => {
  const busy = (minutes: number, agoMinutes: number[]): IMetrics => {
    const invocations: number[] = new Array(minutes).fill(0);
    agoMinutes.forEach(a => (invocations[minutes - 1 - a] += 1));
    return {
      function: 'f', start: 0, period_s: 60, timestamps: invocations.map((_, i) => i * 60), invocations,
      errors: [], throttles: [], concurrent_executions: [], duration_p50_ms: [], duration_p90_ms: [], duration_p99_ms: []
    };
  };

  it('is the shortest window that holds every invocation', () => {
    expect(windowFor(busy(1440, []))).toBe(15);
    expect(windowFor(busy(1440, [0, 1]))).toBe(15);
    expect(windowFor(busy(1440, [0, 14]))).toBe(15);
    expect(windowFor(busy(1440, [15]))).toBe(60);
    expect(windowFor(busy(1440, [200]))).toBe(360);
    expect(windowFor(busy(1440, [1439]))).toBe(1440);
  });

  it('opens a new function on 15 minutes, its series the tail of one read of a day', async () => {
    const api = new MemoryAPI();
    const asked: number[] = [];
    api.metrics = async (name: string, minutes: number) => {
      asked.push(minutes);
      return { ...busy(minutes, [0, 3]), function: name };
    };
    const model = new FaaSModel(api);
    await model.openMetrics('f');
    expect(asked).toEqual([1440]);
    expect(model.metricsMinutes).toBe(15);
    expect(model.metrics!.timestamps.length).toBe(15);
    expect(model.metrics!.invocations.reduce((a, b) => a + b, 0)).toBe(2);
    await model.loadMetrics('f', 360); // a window the user picks is read as such
    expect(asked).toEqual([1440, 360]);
    expect(model.metricsMinutes).toBe(360);
  });

  it('keeps the window it chose when a refresh comes while it opens', async () => {
    const api = new MemoryAPI();
    const asked: number[] = [];
    api.metrics = async (name: string, minutes: number) => {
      asked.push(minutes);
      return { ...busy(minutes, [0]), function: name };
    };
    const model = new FaaSModel(api);
    await model.loadMetrics('old', 1440); // the window the last function was charted over
    const opening = model.openMetrics('f');
    await model.refreshMetrics(); // events came meanwhile
    await opening;
    expect(model.metricsFunction).toBe('f');
    expect(model.metricsMinutes).toBe(15);
    await model.refreshMetrics(); // afterwards a refresh re-reads the chosen window
    expect(asked).toEqual([1440, 1440, 15]);
  });
});

describe('function figures', () => {
  function stats(name: string, fields: Partial<IFunctionStats> = {}): IFunctionStats {
    return {
      name, version: 1, memory: 128, timeout: 3, concurrency: null, updated_at: 0, invocations: 0, errors: 0,
      throttles: 0, in_flight: 0, duration_p50_ms: null, duration_p99_ms: null, gb_seconds: 0, cost_usd: 0,
      last_invoked_at: null, ...fields
    };
  }

  it('are read again when a provisioned function starts an invocation (its in-use count)', async () => {
    jest.useFakeTimers();
    const api = new MemoryAPI();
    let reads = 0;
    const provisioned = [{ qualifier: '$LATEST', requested: 2, allocated: 2, in_use: 0, status: 'READY' as const,
                           reason: null, updated_at: 0, versions: [1], environments: ['a', 'b'] }];
    api.functionStats = async () => {
      reads += 1;
      return { functions: [stats('warm', { provisioned }), stats('cold')], prices: { per_gb_second: 0, per_request: 0 } };
    };
    const model = new FaaSModel(api);
    try {
      await model.refreshFunctions();
      expect(reads).toBe(1);
      model.applyEvents([event(1, { function: 'cold', status: 'running' })]);
      jest.advanceTimersByTime(REFRESH_INTERVAL_MS + 1);
      expect(reads).toBe(1); // a start of an ordinary function changes no figure shown
      model.applyEvents([event(2, { function: 'warm', status: 'running' })]);
      jest.advanceTimersByTime(REFRESH_INTERVAL_MS + 1);
      expect(reads).toBe(2);
      model.applyEvents([{ type: 'function', name: 'warm', version: 1, action: 'provisioned' }]);
      jest.advanceTimersByTime(REFRESH_INTERVAL_MS + 1);
      expect(reads).toBe(3); // one came up, or the count changed
    } finally {
      model.dispose();
      jest.useRealTimers();
    }
  });
});

describe('format', () => {
  it('writes figures the way the console does', () => {
    // UUIDv7 ids of one minute share their first characters; their random tails differ.
    expect(shortId('01a22b28-7380-7708-81b4-cfc7b087424c')).toBe('87424c');
    expect(shortId('01a22b28-7380-7708-81b4-0a11f00d9e21')).toBe('0d9e21');
    expect(duration(2.641)).toBe('2.64 ms');
    expect(duration(250)).toBe('250 ms');
    expect(duration(3000)).toBe('3.00 s');
    expect(duration(null)).toBe('–');
    expect(cost(0.0000012)).toBe('$0.0000012');
    expect(cost(1.5)).toBe('$1.50');
    expect(reportLine({ request_id: 'r', duration_ms: 2.641, billed_duration_ms: 3, memory_size_mb: 128, max_memory_used_mb: 65, init_duration_ms: 139.52 }))
      .toBe('REPORT RequestId: r  ·  Duration: 2.64 ms  ·  Billed Duration: 3 ms  ·  Memory Size: 128 MB  ·  Max Memory Used: 65 MB  ·  Init Duration: 139.52 ms');
    expect(reportLine({ request_id: 'r', duration_ms: null })).toBeNull();
  });
});
