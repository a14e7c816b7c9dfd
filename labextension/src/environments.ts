/**
 * What a function's execution environments look like to the panel: its provisioned
 * concurrency (per qualifier: requested, up, in use) and whether its cold starts fork from a
 * snapshot after INIT (or fell back, and why). Shapes from `GET /faas/api/metrics/functions`;
 * text only, no DOM (the Functions view draws it).
 */

/** One provisioned-concurrency config (`provisioned` of a function's figures). */
export interface IProvisioned {
  /** `$LATEST` (what notebook handles call; it follows each new version), a version or an alias. */
  qualifier: string;
  requested: number;
  /** Environments up, INIT done. */
  allocated: number;
  /** Of them, running an invocation now. */
  in_use: number;
  status: 'IN_PROGRESS' | 'READY' | 'FAILED';
  reason: string | null;
  updated_at: number;
  /** The engine versions the qualifier runs now. */
  versions: number[];
  environments: string[];
}

/** Whether cold starts of the function's newest version fork from a template after INIT. */
export interface ISnapshotState {
  state: 'ready' | 'initializing' | 'refused' | 'not yet';
  /** Why it was refused (INIT left a thread running, held a socket...). */
  reason: string | null;
}

/** `Provisioned 2 · 1 in use`, `Provisioned (live) 1/2 starting · 0 in use`, `… failed: why`. */
export function provisionedText(p: IProvisioned): string {
  const which = p.qualifier === '$LATEST' ? '' : ` (${p.qualifier})`;
  if (p.status === 'FAILED') {
    return `Provisioned${which} ${p.allocated}/${p.requested} failed: ${p.reason ?? 'unknown reason'}`;
  }
  if (p.status === 'IN_PROGRESS') {
    return `Provisioned${which} ${p.allocated}/${p.requested} starting · ${p.in_use} in use`;
  }
  return `Provisioned${which} ${p.requested} · ${p.in_use} in use`;
}

/** The snapshot state in a few words; a refusal names its reason and what happens instead. */
export function snapshotText(s: ISnapshotState): string {
  switch (s.state) {
    case 'ready':
      return 'Snapshot: template ready (cold starts fork after INIT)';
    case 'initializing':
      return 'Snapshot: INIT running in the template';
    case 'refused':
      return `No snapshot: ${s.reason ?? 'refused'}; cold starts run INIT`;
    default:
      return 'Snapshot: made at the first cold start';
  }
}

/** A problem to show in the error colour: a failed config or a refused snapshot. */
export function isProblem(item: IProvisioned | ISnapshotState): boolean {
  return 'status' in item ? item.status === 'FAILED' : item.state === 'refused';
}

/** How an invocation's environment was initialized, for its detail's Init field. */
export function initText(inv: { init_duration_ms?: number | null; init_type?: string | null }, duration: (ms: number) => string): string {
  const kind = inv.init_type === 'provisioned-concurrency' ? 'provisioned' : inv.init_type;
  if (inv.init_duration_ms !== null && inv.init_duration_ms !== undefined) {
    return kind ? `${duration(inv.init_duration_ms)} · ${kind}` : duration(inv.init_duration_ms);
  }
  return kind === 'provisioned' ? 'warm · provisioned' : 'warm';
}
