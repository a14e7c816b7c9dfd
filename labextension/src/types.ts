/**
 * The shapes the jupyter_faas server answers with (see jupyter_faas/server/openapi.yaml).
 */
import { IProvisioned, ISnapshotState } from './environments';

export type InvocationStatus =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'cancelled'
  | 'throttled';

export const STATUSES: InvocationStatus[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'timed_out',
  'cancelled',
  'throttled'
];

export const TERMINAL = new Set<InvocationStatus>([
  'succeeded',
  'failed',
  'timed_out',
  'cancelled',
  'throttled'
]);

export interface IFunctionStats {
  name: string;
  version: number;
  memory: number;
  timeout: number;
  concurrency: number | null;
  updated_at: number;
  invocations: number;
  errors: number;
  throttles: number;
  in_flight: number;
  duration_p50_ms: number | null;
  duration_p99_ms: number | null;
  gb_seconds: number;
  cost_usd: number;
  last_invoked_at: number | null;
  /** Its provisioned-concurrency configs (none: empty; absent from an older server). */
  provisioned?: IProvisioned[];
  /** Its newest version's snapshot state; null when it asks for none. */
  snapshot?: ISnapshotState | null;
}

export interface IFunctionStatsReply {
  functions: IFunctionStats[];
  prices: { per_gb_second: number; per_request: number };
}

export interface IInvocationError {
  errorType: string;
  errorMessage: string;
  stackTrace?: string[] | null;
  [key: string]: unknown;
}

export interface IInvocation {
  request_id: string;
  function: string;
  version: number;
  status: InvocationStatus;
  created_at: number;
  started_at?: number | null;
  ended_at?: number | null;
  duration_ms?: number | null;
  billed_duration_ms?: number | null;
  memory_size_mb?: number | null;
  max_memory_used_mb?: number | null;
  init_duration_ms?: number | null;
  error?: IInvocationError | null;
  error_type?: string | null;
  invocation_type?: string;
  encoding?: string;
  environment_id?: string | null;
  input_summary?: string | null;
  /** What made it: async, schedule, url, file, queue, destination, redrive; null: a direct call. */
  triggered_by?: string | null;
  /** An Event invocation's attempts so far; null for a direct call. */
  attempts?: number | null;
  /** How the environment that ran it was initialized (Lambda's AWS_LAMBDA_INITIALIZATION_TYPE). */
  init_type?: 'on-demand' | 'provisioned-concurrency' | 'snap-start' | null;
}

/** A trigger (GET /faas/api/triggers), with what its kind adds. */
export interface ITrigger {
  id: string;
  kind: 'schedule' | 'url' | 'file' | 'queue';
  function: string;
  spec: Record<string, unknown>;
  enabled: boolean;
  last_fired_at: number | null;
  fired: number;
  caught_up: number;
  next_at?: number | null;
  url?: string;
  depth?: number;
  in_flight?: number;
  dead_letters?: number;
}

/** A failed Event invocation waiting for a redrive (GET /faas/api/dead-letters). */
export interface IDeadLetter {
  id: number;
  request_id: string;
  function: string;
  input_summary: string | null;
  condition: string;
  error_type: string | null;
  error_message: string | null;
  attempts: number;
  created_at: number;
}

/** GET /jupyter-faas/api/version: the package the Jupyter server runs, and the FaaS server's. */
export interface IVersions {
  extension: string;
  /** null when the FaaS server could not be reached (`server_error` says why). */
  server: string | null;
  server_error?: string;
}

export interface ICursor {
  before: number;
  before_id: string;
}

export interface IInvocationPage {
  invocations: IInvocation[];
  next: ICursor | null;
}

export interface IInvocationQuery {
  function?: string;
  status?: InvocationStatus;
  limit: number;
  cursor?: ICursor | null;
}

/** A stored log line (REST). Live lines from the feed have no id. */
export interface ILogLine {
  id?: number;
  ts: number;
  stream: string;
  line: string;
}

export interface IMetrics {
  function: string;
  start: number;
  period_s: number;
  timestamps: number[];
  invocations: number[];
  errors: number[];
  throttles: number[];
  concurrent_executions: number[];
  duration_p50_ms: (number | null)[];
  duration_p90_ms: (number | null)[];
  duration_p99_ms: (number | null)[];
}

export interface IInvokeResult {
  request_id: string;
  status: InvocationStatus;
  result: unknown;
  error: IInvocationError | null;
  logs: string[];
}

/** Events of the feed (/jupyter-faas/events). */
export type FeedEvent =
  | {
      type: 'function';
      name: string;
      version: number | null;
      action: 'deployed' | 'deleted' | 'provisioned' | 'snapshot';
    }
  | ({ type: 'invocation' } & IInvocation)
  | {
      type: 'log';
      request_id: string;
      function: string;
      lines: [number, string, string][];
      dropped: number;
    }
  | { type: 'overflow'; dropped: number };
