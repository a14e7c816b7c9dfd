/**
 * The Dask cluster behind the server's Dask backend, for the cluster view and the worker
 * column: its workers, this server's environments on each (busy, idle, starting) with their
 * memory, and the Dask dashboard's address. State and signals only, no DOM; read from
 * `GET /faas/api/status` (`backends.dask`) through the panel's proxy.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { CoalescedRead } from './coalesce';
import { requestAPI } from './handler';

export interface IClusterEnvironment {
  id: string;
  function: string;
  /** The Lambda version it runs: `$LATEST` or a published number. */
  version: string;
  state: 'starting' | 'idle' | 'busy' | 'dead' | string;
  /** Memory it uses now, as its worker last reported (null before the first report). */
  memory_mb: number | null;
  memory_limit_mb: number;
}

export interface IClusterWorker {
  address: string;
  name: string | null;
  /** False for a worker that left the cluster while the server still knew environments on it. */
  in_cluster: boolean;
  nthreads: number | null;
  /** The worker process's own memory, from Dask. */
  memory_mb: number | null;
  memory_limit_mb: number | null;
  /** This server's environments on the worker, together (their processes, not the worker's). */
  environments_memory_mb: number | null;
  /** `cgroup` or `watchdog`: how this worker enforces the functions' memory limits. */
  memory_enforcement: string | null;
  environments: IClusterEnvironment[];
}

export interface IDaskStatus {
  backend: 'dask';
  /** The cluster's memory budget in admission (MB); null while unknown (no cap). */
  memory_budget_mb: number | null;
  scheduler: string;
  dashboard: string | null;
  connected: boolean;
  worker_threads: number;
  workers: IClusterWorker[];
  environments: number;
  memory_enforcement: string;
  last_error: string | null;
}

/** Admission's count of the invocations running on the cluster. */
export interface IMemoryPool {
  running: number;
  memory_in_use_mb: number;
  memory_budget_mb: number | null;
}

export interface IStatusReply {
  default_backend?: string;
  memory_pools?: { [name: string]: IMemoryPool };
  backends?: { [name: string]: { backend?: string } & Record<string, unknown> };
}

export interface IClusterAPI {
  status(): Promise<IStatusReply>;
}

export const clusterAPI: IClusterAPI = {
  status: () => requestAPI<IStatusReply>('status')
};

/**
 * The Dask worker of an environment id (`dask-123-4@tcp://10.0.0.5:40123`), or null for an
 * environment of the local backend (no `@`).
 */
export function workerOf(environmentId: string | null | undefined): string | null {
  if (!environmentId) {
    return null;
  }
  const at = environmentId.indexOf('@');
  return at < 0 ? null : environmentId.slice(at + 1);
}

/** A worker address as a column shows it: `10.0.0.5:40123` (the protocol dropped). */
export function shortAddress(address: string): string {
  return address.replace(/^[a-z]+:\/\//, '');
}

/** Counts of a worker's environments by state. */
export function byState(envs: IClusterEnvironment[]): { busy: number; idle: number; starting: number } {
  const out = { busy: 0, idle: 0, starting: 0 };
  for (const e of envs) {
    if (e.state === 'busy' || e.state === 'idle' || e.state === 'starting') {
      out[e.state] += 1;
    }
  }
  return out;
}

/** `256 of 9600 MB in use` (the cluster's budget in admission), or what is known of it. */
export function budgetText(dask: IDaskStatus, pool: IMemoryPool | null): string {
  const inUse = pool ? pool.memory_in_use_mb : 0;
  const budget = dask.memory_budget_mb;
  return budget === null || budget === undefined ? `${inUse} MB in use, no cap yet` : `${inUse} of ${budget} MB in use`;
}

/** Only an http(s) dashboard address becomes a link. */
export function dashboardLink(status: IDaskStatus | null): string | null {
  const link = status?.dashboard;
  return link && /^https?:\/\//.test(link) ? link : null;
}

/** How often the view re-reads the cluster while the server runs a Dask backend. */
export const CLUSTER_REFRESH_MS = 3000;

export class ClusterModel {
  constructor(api: IClusterAPI = clusterAPI) {
    this._api = api;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }
  /** The Dask backend's status, or null when the server runs none. */
  get dask(): IDaskStatus | null {
    return this._dask;
  }
  get error(): string | null {
    return this._error;
  }
  /** Admission's count of what runs on the cluster (null before anything ran there). */
  get pool(): IMemoryPool | null {
    return this._pool;
  }

  /** Read again; calls while a read is out make one more read after it, not one each. */
  refresh(): Promise<void> {
    return this._refresher.run();
  }

  private async _readOnce(): Promise<void> {
    try {
      const reply = await this._api.status();
      const dask = reply.backends?.dask;
      // A function naming dask on a server without it lists {backend, available: false}.
      this._dask =
        dask && dask.backend === 'dask' && dask.available !== false ? (dask as unknown as IDaskStatus) : null;
      this._pool = reply.memory_pools?.dask ?? null;
      this._error = null;
    } catch (error) {
      this._error = `Cluster: ${(error as Error).message}`;
    }
    this._changed.emit();
  }

  private _api: IClusterAPI;
  private _dask: IDaskStatus | null = null;
  private _pool: IMemoryPool | null = null;
  private _error: string | null = null;
  private _refresher = new CoalescedRead(() => this._readOnce());
  private _changed = new Signal<this, void>(this);
}
