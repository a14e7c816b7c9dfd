/** The cluster view's model: the worker of an environment, counts by state, one read at a time. */
import { budgetText, byState, ClusterModel, dashboardLink, IClusterAPI, IDaskStatus, IStatusReply, shortAddress, workerOf } from '../src/cluster';

function dask(fields: Partial<IDaskStatus> = {}): IDaskStatus {
  return {
    backend: 'dask',
    scheduler: 'tcp://127.0.0.1:8786',
    dashboard: 'http://127.0.0.1:8787/status',
    connected: true,
    worker_threads: 1,
    workers: [],
    environments: 0,
    memory_enforcement: 'cgroup (on the Dask workers)',
    memory_budget_mb: 9600,
    last_error: null,
    ...fields
  };
}

describe('workerOf', () => {
  it('is the part after @ of a Dask environment id', () => {
    expect(workerOf('dask-12-3@tcp://10.0.0.5:40123')).toBe('tcp://10.0.0.5:40123');
  });
  it('is null for a local environment or none', () => {
    expect(workerOf('e-12-1')).toBeNull();
    expect(workerOf(null)).toBeNull();
    expect(workerOf(undefined)).toBeNull();
  });
  it('drops the protocol for a column', () => {
    expect(shortAddress('tcp://10.0.0.5:40123')).toBe('10.0.0.5:40123');
    expect(shortAddress('tls://host:1')).toBe('host:1');
  });
});

describe('byState and dashboardLink', () => {
  it('counts environments by state', () => {
    const env = (state: string) => ({ id: state, function: 'f', version: '$LATEST', state, memory_mb: 1, memory_limit_mb: 128 });
    expect(byState([env('busy'), env('idle'), env('idle'), env('starting'), env('dead')])).toEqual({ busy: 1, idle: 2, starting: 1 });
  });
  it('links only an http(s) dashboard', () => {
    expect(dashboardLink(dask())).toBe('http://127.0.0.1:8787/status');
    expect(dashboardLink(dask({ dashboard: null }))).toBeNull();
    expect(dashboardLink(dask({ dashboard: 'javascript:alert(1)' }))).toBeNull();
    expect(dashboardLink(null)).toBeNull();
  });
});

describe('budgetText', () => {
  it('says what runs of the budget, or that there is no cap yet', () => {
    expect(budgetText(dask(), { running: 2, memory_in_use_mb: 256, memory_budget_mb: 9600 })).toBe('256 of 9600 MB in use');
    expect(budgetText(dask(), null)).toBe('0 of 9600 MB in use');
    expect(budgetText(dask({ memory_budget_mb: null }), null)).toBe('0 MB in use, no cap yet');
  });
});

describe('ClusterModel', () => {
  function api(replies: IStatusReply[]): IClusterAPI & { calls: number } {
    const out = {
      calls: 0,
      status: async () => {
        out.calls += 1;
        return replies[Math.min(out.calls, replies.length) - 1];
      }
    };
    return out;
  }

  it('keeps the Dask backend of the status, and null without one', async () => {
    const model = new ClusterModel(api([{ backends: { dask: { ...dask() } } }]));
    await model.refresh();
    expect(model.dask?.scheduler).toBe('tcp://127.0.0.1:8786');
    const none = new ClusterModel(api([{ backends: { local: {} } }]));
    await none.refresh();
    expect(none.dask).toBeNull();
  });

  it('ignores a dask backend the server does not run', async () => {
    const model = new ClusterModel(api([{ backends: { dask: { backend: 'dask', available: false } } }]));
    await model.refresh();
    expect(model.dask).toBeNull();
  });

  it('reads once more, not once per call, when calls come during a read', async () => {
    const a = api([{ backends: {} }]);
    const model = new ClusterModel(a);
    await Promise.all([model.refresh(), model.refresh(), model.refresh()]);
    expect(a.calls).toBe(2);
  });

  it('names a failed read', async () => {
    const model = new ClusterModel({ status: async () => Promise.reject(new Error('503 down')) });
    await model.refresh();
    expect(model.error).toBe('Cluster: 503 down');
  });
});
