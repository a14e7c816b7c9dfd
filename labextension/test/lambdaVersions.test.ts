/** The Versions view's model: alias routes, the split by version, and one read at a time. */
import {
  aliasRoutes,
  hasVersions,
  IFunctionVersions,
  IVersionsAPI,
  percent,
  versionSplit,
  VersionsModel
} from '../src/lambdaVersions';

function fn(name: string, fields: Partial<IFunctionVersions> = {}): IFunctionVersions {
  return {
    name,
    versions: [{ version: '$LATEST', engine_version: 1, description: '', published_at: null }],
    aliases: [],
    invocations_by_version: [],
    ...fields
  };
}

describe('aliasRoutes', () => {
  it('gives the alias its version the rest of the weight', () => {
    const routes = aliasRoutes({ name: 'live', version: '1', weights: { '2': 0.3 }, description: '' });
    expect(routes.map(r => r.version)).toEqual(['1', '2']);
    expect(routes[0].weight).toBeCloseTo(0.7);
    expect(routes[1].weight).toBeCloseTo(0.3);
  });
  it('is all one version without weights', () => {
    expect(aliasRoutes({ name: 'prod', version: '3', weights: {}, description: '' })).toEqual([{ version: '3', weight: 1 }]);
  });
});

describe('versionSplit', () => {
  it('orders $LATEST first then by number, with shares of the total', () => {
    const split = versionSplit([
      { version: '10', invocations: 1, errors: 0 },
      { version: '2', invocations: 6, errors: 1 },
      { version: '$LATEST', invocations: 3, errors: 0 }
    ]);
    expect(split.map(s => s.version)).toEqual(['$LATEST', '2', '10']);
    expect(split.map(s => s.share)).toEqual([0.3, 0.6, 0.1]);
    expect(split[1].errors).toBe(1);
  });
  it('has no shares without invocations', () => {
    expect(versionSplit([])).toEqual([]);
    expect(versionSplit([{ version: '1', invocations: 0, errors: 0 }])[0].share).toBe(0);
  });
});

describe('percent', () => {
  it('never rounds a real share to 0% or 100%', () => {
    expect(percent(0)).toBe('0%');
    expect(percent(1)).toBe('100%');
    expect(percent(0.004)).toBe('<1%');
    expect(percent(0.996)).toBe('>99%');
    expect(percent(0.3)).toBe('30%');
  });
});

describe('VersionsModel', () => {
  it('keeps the functions with published versions or aliases, by name', async () => {
    const api: IVersionsAPI = {
      functionVersions: async () => ({
        functions: [
          fn('zeta', { aliases: [{ name: 'live', version: '$LATEST', weights: {}, description: '' }] }),
          fn('plain'),
          fn('alpha', { versions: [...fn('alpha').versions, { version: '1', engine_version: 1, description: '', published_at: 5 }] })
        ]
      })
    };
    const model = new VersionsModel(api);
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.refresh();
    expect(model.functions.map(f => f.name)).toEqual(['alpha', 'zeta']);
    expect(hasVersions(fn('plain'))).toBe(false);
    expect(changes).toBe(1);
    expect(model.error).toBeNull();
  });

  it('signals a change only when the functions or the error differ', async () => {
    let reply: IFunctionVersions[] = [fn('alpha', { aliases: [{ name: 'live', version: '$LATEST', weights: {}, description: '' }] })];
    let fail = false;
    const api: IVersionsAPI = {
      functionVersions: async () => {
        if (fail) {
          throw new Error('server gone');
        }
        return { functions: JSON.parse(JSON.stringify(reply)) };
      }
    };
    const model = new VersionsModel(api);
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.refresh();
    await model.refresh();
    expect(changes).toBe(1);
    reply = [{ ...reply[0], invocations_by_version: [{ version: '$LATEST', invocations: 3, errors: 0 }] }];
    await model.refresh();
    expect(changes).toBe(2);
    expect(model.functions[0].invocations_by_version[0].invocations).toBe(3);
    fail = true;
    await model.refresh();
    expect(changes).toBe(3);
    expect(model.error).toBe('Versions: server gone');
    expect(model.functions.map(f => f.name)).toEqual(['alpha']);
    fail = false;
    await model.refresh();
    expect(changes).toBe(4);
    expect(model.error).toBeNull();
  });

  it('makes one more read for calls made while one is out, not one each', async () => {
    const pending: (() => void)[] = [];
    let reads = 0;
    const api: IVersionsAPI = {
      functionVersions: () =>
        new Promise(resolve => {
          reads++;
          pending.push(() => resolve({ functions: [] }));
        })
    };
    const model = new VersionsModel(api);
    const first = model.refresh();
    const more = [model.refresh(), model.refresh(), model.refresh()];
    expect(reads).toBe(1);
    pending.shift()!();
    await new Promise(r => setTimeout(r, 0));
    expect(reads).toBe(2);
    pending.shift()!();
    await Promise.all([first, ...more]);
    expect(reads).toBe(2);
  });

  it('says what failed and keeps what it had', async () => {
    let fail = false;
    const api: IVersionsAPI = {
      functionVersions: async () => {
        if (fail) {
          throw new Error('503 FaaS server unreachable');
        }
        return { functions: [fn('a', { aliases: [{ name: 'x', version: '1', weights: {}, description: '' }] })] };
      }
    };
    const model = new VersionsModel(api);
    await model.refresh();
    fail = true;
    await model.refresh();
    expect(model.error).toContain('503 FaaS server unreachable');
    expect(model.functions.map(f => f.name)).toEqual(['a']);
  });
});
