/**
 * The one door to the server: REST through the jupyter_server extension (Jupyter's auth and
 * XSRF handled by ServerConnection) and the URL of the event feed.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import {
  ICursor,
  IFunctionStatsReply,
  IInvocation,
  IInvocationPage,
  IInvocationQuery,
  IInvokeResult,
  ILogLine,
  IMetrics,
  IVersions
} from './types';

const NAMESPACE = 'jupyter-faas';

/** An error the server explained: its message is meant for the user. */
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export async function requestAPI<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, NAMESPACE, 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      (data && (data.message || data.errorMessage)) || `${response.status} ${response.statusText}`;
    throw new APIError(message, response.status);
  }
  return data as T;
}

function query(params: Record<string, string | number | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** What the model needs from the server; tests give the model another implementation. */
export interface IFaaSAPI {
  versions(): Promise<IVersions>;
  functionStats(): Promise<IFunctionStatsReply>;
  invocations(q: IInvocationQuery): Promise<IInvocationPage>;
  invocation(requestId: string): Promise<IInvocation>;
  logs(requestId: string, after: number, limit: number): Promise<{ logs: ILogLine[] }>;
  metrics(name: string, minutes: number): Promise<IMetrics>;
  invoke(name: string, event: string): Promise<IInvokeResult>;
  cancel(requestId: string): Promise<{ cancelled: boolean }>;
  deleteFunction(name: string): Promise<void>;
}

export const restAPI: IFaaSAPI = {
  versions: () => requestAPI<IVersions>('version'),
  functionStats: () => requestAPI<IFunctionStatsReply>('metrics/functions'),
  invocations: (q: IInvocationQuery) => {
    const cursor: Partial<ICursor> = q.cursor ?? {};
    return requestAPI<IInvocationPage>(
      'invocations' +
        query({
          function: q.function,
          status: q.status,
          limit: q.limit,
          before: cursor.before,
          before_id: cursor.before_id
        })
    );
  },
  invocation: (id: string) => requestAPI<IInvocation>(`invocations/${encodeURIComponent(id)}`),
  logs: (id: string, after: number, limit: number) =>
    requestAPI<{ logs: ILogLine[] }>(
      `invocations/${encodeURIComponent(id)}/logs` + query({ after, limit })
    ),
  metrics: (name: string, minutes: number) =>
    requestAPI<IMetrics>(`metrics/functions/${encodeURIComponent(name)}` + query({ minutes })),
  invoke: (name: string, event: string) =>
    requestAPI<IInvokeResult>(`functions/${encodeURIComponent(name)}/invocations`, {
      method: 'POST',
      body: event
    }),
  cancel: (id: string) =>
    requestAPI<{ cancelled: boolean }>(`invocations/${encodeURIComponent(id)}/cancel`, {
      method: 'POST'
    }),
  deleteFunction: async (name: string) => {
    await requestAPI<void>(`functions/${encodeURIComponent(name)}`, { method: 'DELETE' });
  }
};

/** The event feed's websocket URL (with Jupyter's token when the page was opened with one). */
export function eventsURL(): string {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.wsUrl, NAMESPACE, 'events');
  if (settings.token && settings.appendToken) {
    url += `?token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}
