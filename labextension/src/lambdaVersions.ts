/**
 * Lambda's versions of each function, for the Versions view: published versions, aliases with
 * their routing weights, and the split of invocations by the version that ran. State and
 * signals only, no DOM; read from `GET /faas/api/metrics/versions` through the panel's proxy.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { CoalescedRead } from './coalesce';
import { requestAPI } from './handler';

export interface IPublishedVersion {
  /** `$LATEST` or a published number ("1", "2"...). */
  version: string;
  /** The engine version it runs. */
  engine_version: number;
  description: string;
  published_at: number | null;
}

export interface IAlias {
  name: string;
  version: string;
  /** `{version: share}` of the one additional version, if any. */
  weights: Record<string, number>;
  description: string;
}

export interface IVersionCount {
  version: string;
  invocations: number;
  errors: number;
}

export interface IFunctionVersions {
  name: string;
  versions: IPublishedVersion[];
  aliases: IAlias[];
  invocations_by_version: IVersionCount[];
}

export interface IVersionsAPI {
  functionVersions(): Promise<{ functions: IFunctionVersions[] }>;
}

export const versionsAPI: IVersionsAPI = {
  functionVersions: () => requestAPI<{ functions: IFunctionVersions[] }>('metrics/versions')
};

/** One version an alias routes to, and its share of the calls (0..1). */
export interface IRoute {
  version: string;
  weight: number;
}

/** An alias's routes: its own version gets what the additional ones leave (Lambda's rule). */
export function aliasRoutes(alias: IAlias): IRoute[] {
  const extra = Object.entries(alias.weights).map(([version, weight]) => ({ version, weight }));
  const rest = Math.max(0, 1 - extra.reduce((sum, r) => sum + r.weight, 0));
  return [{ version: alias.version, weight: rest }, ...extra];
}

export interface IShare extends IVersionCount {
  /** Of the function's invocations, 0..1. */
  share: number;
}

/** Invocations by version with each one's share; `$LATEST` first, then by number. */
export function versionSplit(counts: IVersionCount[]): IShare[] {
  const total = counts.reduce((sum, c) => sum + c.invocations, 0);
  const order = (v: string) => (v === '$LATEST' ? -1 : Number(v));
  return [...counts]
    .sort((a, b) => order(a.version) - order(b.version))
    .map(c => ({ ...c, share: total ? c.invocations / total : 0 }));
}

/** Percent for a share, whole unless that would read 0 % or 100 % for what is neither. */
export function percent(share: number): string {
  const p = share * 100;
  if (p > 0 && p < 1) {
    return '<1%';
  }
  if (p < 100 && p > 99) {
    return '>99%';
  }
  return `${Math.round(p)}%`;
}

/** A function has something to show here once it has published versions or aliases. */
export function hasVersions(f: IFunctionVersions): boolean {
  return f.aliases.length > 0 || f.versions.some(v => v.version !== '$LATEST');
}

export class VersionsModel {
  constructor(api: IVersionsAPI = versionsAPI) {
    this._api = api;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }
  /** The functions with published versions or aliases, by name. */
  get functions(): IFunctionVersions[] {
    return this._functions;
  }
  get error(): string | null {
    return this._error;
  }

  /** Read again; calls while a read is out make one more read after it, not one each. */
  refresh(): Promise<void> {
    return this._refresher.run();
  }

  /** Signals only when what a view would show differs: the panel reads again after every
   * batch of invocations, and redrawing identical cards would replace their nodes under the
   * user's pointer (and under a browser test's scroll) for nothing. */
  private async _readOnce(): Promise<void> {
    let functions = this._functions;
    let error: string | null = null;
    try {
      const reply = await this._api.functionVersions();
      functions = reply.functions.filter(hasVersions).sort((a, b) => (a.name < b.name ? -1 : 1));
    } catch (e) {
      error = `Versions: ${(e as Error).message}`;
    }
    const shown = JSON.stringify([functions, error]);
    this._functions = functions;
    this._error = error;
    if (shown !== this._shown) {
      this._shown = shown;
      this._changed.emit();
    }
  }

  private _api: IVersionsAPI;
  private _functions: IFunctionVersions[] = [];
  private _error: string | null = null;
  private _shown: string | null = null;
  private _refresher = new CoalescedRead(() => this._readOnce());
  private _changed = new Signal<this, void>(this);
}
