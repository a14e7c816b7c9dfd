/** The panel's words for provisioned concurrency, snapshots and how an invocation was initialized. */
import { initText, IProvisioned, isProblem, provisionedText, snapshotText } from '../src/environments';
import { duration } from '../src/format';

function config(fields: Partial<IProvisioned> = {}): IProvisioned {
  return {
    qualifier: '$LATEST', requested: 2, allocated: 2, in_use: 1, status: 'READY', reason: null,
    updated_at: 0, versions: [3], environments: ['env-1', 'env-2'], ...fields
  };
}

describe('provisioned concurrency', () => {
  it('says how many are kept and in use, naming a qualifier other than $LATEST', () => {
    expect(provisionedText(config())).toBe('Provisioned 2 · 1 in use');
    expect(provisionedText(config({ qualifier: 'live', in_use: 0 }))).toBe('Provisioned (live) 2 · 0 in use');
  });

  it('says how many are up while they start, and why they failed', () => {
    expect(provisionedText(config({ status: 'IN_PROGRESS', allocated: 1, in_use: 0 }))).toBe(
      'Provisioned 1/2 starting · 0 in use'
    );
    const failed = config({ status: 'FAILED', allocated: 0, reason: 'Runtime.ImportModuleError: no numpy' });
    expect(provisionedText(failed)).toBe('Provisioned 0/2 failed: Runtime.ImportModuleError: no numpy');
    expect(isProblem(failed)).toBe(true);
    expect(isProblem(config())).toBe(false);
  });
});

describe('snapshots', () => {
  it('names each state, and a refusal with its reason', () => {
    expect(snapshotText({ state: 'ready', reason: null })).toBe('Snapshot: template ready (cold starts fork after INIT)');
    expect(snapshotText({ state: 'not yet', reason: null })).toBe('Snapshot: made at the first cold start');
    expect(snapshotText({ state: 'initializing', reason: null })).toBe('Snapshot: INIT running in the template');
    const refused = { state: 'refused' as const, reason: 'INIT left a thread running (Thread-1)' };
    expect(snapshotText(refused)).toBe('No snapshot: INIT left a thread running (Thread-1); cold starts run INIT');
    expect(isProblem(refused)).toBe(true);
  });
});

describe('an invocation\'s Init field', () => {
  it('is warm, warm from a provisioned environment, or the cold start and its kind', () => {
    expect(initText({}, duration)).toBe('warm');
    expect(initText({ init_type: 'on-demand' }, duration)).toBe('warm');
    expect(initText({ init_type: 'provisioned-concurrency' }, duration)).toBe('warm · provisioned');
    expect(initText({ init_duration_ms: 45.2, init_type: 'snap-start' }, duration)).toBe('45 ms · snap-start');
    expect(initText({ init_duration_ms: 3.5 }, duration)).toBe('3.50 ms');
  });
});
