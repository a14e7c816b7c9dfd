/**
 * The Dask cluster, when the server runs a Dask backend: scheduler, a link to the Dask
 * dashboard when the cluster has one, how memory limits are enforced on the workers, and
 * per worker its threads, memory and this server's environments there (busy, idle,
 * starting) with the memory each uses. Hidden when the server runs no Dask backend.
 *
 * It re-reads the status when the functions' figures refresh (after invocations end) and
 * every few seconds while the cluster is shown, so environments coming and going show.
 */
import { Widget } from '@lumino/widgets';
import { budgetText, byState, CLUSTER_REFRESH_MS, ClusterModel, dashboardLink, IClusterEnvironment, IClusterWorker, shortAddress } from '../cluster';
import { Change, FaaSModel } from '../model';
import { fill, h } from './dom';

function mb(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : `${Math.round(value)} MB`;
}

export class ClusterView extends Widget {
  constructor(model: FaaSModel, cluster: ClusterModel = new ClusterModel()) {
    super();
    this.addClass('jp-FaaS-cluster');
    this._cluster = cluster;
    model.changed.connect((_: FaaSModel, change: Change) => {
      if (change === 'functions') {
        void cluster.refresh();
      }
    }, this);
    cluster.changed.connect(this._render, this);
    this._render();
    void cluster.refresh();
  }

  dispose(): void {
    if (this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
    super.dispose();
  }

  private _render(): void {
    const dask = this._cluster.dask;
    if (dask === null) {
      this._poll(false);
      fill(this.node);
      this.hide();
      return;
    }
    this._poll(true);
    this.show();
    const link = dashboardLink(dask);
    const threads = dask.workers.reduce((sum, w) => sum + (w.in_cluster ? w.nthreads ?? 0 : 0), 0);
    const present = dask.workers.filter(w => w.in_cluster).length;
    fill(
      this.node,
      h('h3', { class: 'jp-FaaS-heading' }, 'Dask cluster'),
      h(
        'div',
        { class: 'jp-FaaS-clusterHead' },
        h('code', { class: 'jp-FaaS-scheduler', title: 'The Dask scheduler' }, dask.scheduler),
        h('span', { class: `jp-FaaS-clusterState ${dask.connected ? 'jp-mod-live' : 'jp-mod-error'}` }, dask.connected ? 'connected' : 'not connected'),
        link
          ? h('a', { class: 'jp-FaaS-dashboard', href: link, target: '_blank', rel: 'noopener noreferrer', title: `The Dask dashboard: ${link}` }, 'Dashboard ↗')
          : h('span', { class: 'jp-FaaS-noDashboard', title: 'The scheduler serves no dashboard (started with --no-dashboard, or bokeh is not installed)' }, 'no dashboard')
      ),
      h(
        'div',
        { class: 'jp-FaaS-clusterFacts' },
        `${present} worker${present === 1 ? '' : 's'} · ${threads} thread${threads === 1 ? '' : 's'} · memory limits: ${dask.memory_enforcement}`
      ),
      h(
        'div',
        { class: 'jp-FaaS-clusterFacts jp-FaaS-clusterBudget', title: "Admission: the memory sizes of the invocations running on the cluster, against its budget (FaaSServer.dask_memory_budget_mb, or 80% of the workers' memory limits)" },
        `memory budget: ${budgetText(dask, this._cluster.pool)}`
      ),
      dask.last_error ? h('div', { class: 'jp-FaaS-errorLine' }, dask.last_error) : null,
      this._cluster.error ? h('div', { class: 'jp-FaaS-errorLine' }, this._cluster.error) : null,
      dask.workers.length === 0
        ? h('p', { class: 'jp-FaaS-empty' }, dask.connected ? 'No workers in the cluster.' : 'Connects at the first invocation of a Dask function.')
        : h('div', { class: 'jp-FaaS-workerList' }, ...dask.workers.map(w => this._worker(w)))
    );
  }

  private _worker(w: IClusterWorker): HTMLElement {
    const counts = byState(w.environments);
    const memory =
      `worker ${mb(w.memory_mb)}` + (w.memory_limit_mb ? ` of ${mb(w.memory_limit_mb)}` : '') +
      ` · environments ${mb(w.environments_memory_mb)}`;
    return h(
      'div',
      { class: `jp-FaaS-worker${w.in_cluster ? '' : ' jp-mod-gone'}`, 'data-worker': w.address },
      h(
        'div',
        { class: 'jp-FaaS-workerHead' },
        h('code', { class: 'jp-FaaS-workerAddress', title: w.address }, shortAddress(w.address)),
        w.name !== null && w.name !== shortAddress(w.address) ? h('span', { class: 'jp-FaaS-workerName', title: 'The Dask worker name' }, `name ${w.name}`) : null,
        h('span', { class: 'jp-FaaS-workerThreads' }, w.in_cluster ? `${w.nthreads ?? '?'} thread${w.nthreads === 1 ? '' : 's'}` : 'left the cluster'),
        w.memory_enforcement ? h('span', { class: 'jp-FaaS-workerEnforcement', title: 'How this worker enforces memory limits' }, w.memory_enforcement) : null
      ),
      h('div', { class: 'jp-FaaS-workerMemory', 'data-stat': 'memory' }, memory),
      h(
        'div',
        { class: 'jp-FaaS-workerEnvs', 'data-stat': 'environments' },
        `${w.environments.length} environment${w.environments.length === 1 ? '' : 's'}: ${counts.busy} busy · ${counts.idle} idle` +
          (counts.starting ? ` · ${counts.starting} starting` : '')
      ),
      w.environments.length ? h('div', { class: 'jp-FaaS-envList' }, ...w.environments.map(e => this._env(e))) : null
    );
  }

  private _env(e: IClusterEnvironment): HTMLElement {
    const version = e.version === '$LATEST' ? '' : `:${e.version}`;
    return h(
      'span',
      {
        class: `jp-FaaS-env jp-FaaS-env-${e.state}`,
        'data-env': e.id,
        'data-state': e.state,
        title: `${e.id}: ${e.function}${version}, ${e.state}, ${mb(e.memory_mb)} of ${e.memory_limit_mb} MB`
      },
      `${e.function}${version} · ${e.state} · ${mb(e.memory_mb)}`
    );
  }

  private _poll(on: boolean): void {
    if (on && this._timer === null) {
      this._timer = setInterval(() => void this._cluster.refresh(), CLUSTER_REFRESH_MS);
    } else if (!on && this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
  }

  private _cluster: ClusterModel;
  private _timer: ReturnType<typeof setInterval> | null = null;
}
