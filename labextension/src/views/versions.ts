/** Versions: per function with published versions or aliases, its versions, its aliases and
 * their weights, and how its invocations split by the version that ran. */
import { Widget } from '@lumino/widgets';
import { count } from '../format';
import { aliasRoutes, IFunctionVersions, percent, versionSplit, VersionsModel } from '../lambdaVersions';
import { Change, FaaSModel } from '../model';
import { fill, h } from './dom';

export class VersionsView extends Widget {
  constructor(model: FaaSModel, versions: VersionsModel = new VersionsModel()) {
    super();
    this.addClass('jp-FaaS-versions');
    this._versions = versions;
    // The function figures are read again after invocations and deploys: so are these.
    model.changed.connect((_: FaaSModel, change: Change) => {
      if (change === 'functions') {
        void versions.refresh();
      }
    }, this);
    versions.changed.connect(this._render, this);
    this._render();
    void versions.refresh();
  }

  private _render(): void {
    const fns = this._versions.functions;
    const error = this._versions.error;
    fill(
      this.node,
      h('h3', { class: 'jp-FaaS-heading' }, 'Versions and aliases'),
      error ? h('p', { class: 'jp-FaaS-errorLine' }, error) : null,
      fns.length === 0
        ? h('p', { class: 'jp-FaaS-empty' }, 'No published versions yet: f.publish() or PublishVersion.')
        : h('div', {}, ...fns.map(f => this._card(f)))
    );
  }

  private _card(f: IFunctionVersions): HTMLElement {
    const published = f.versions.map(v =>
      h('span', { class: 'jp-FaaS-versionTag', 'data-version': v.version, title: `${f.name}:${v.version} runs engine version ${v.engine_version}${v.description ? ` (${v.description})` : ''}` },
        v.version === '$LATEST' ? '$LATEST' : `v${v.version}`)
    );
    const aliases = f.aliases.map(a =>
      h('div', { class: 'jp-FaaS-alias', 'data-alias': a.name },
        h('span', { class: 'jp-FaaS-aliasName' }, a.name),
        ' → ',
        ...aliasRoutes(a).flatMap((r, i) => [
          i ? ' · ' : '',
          h('span', { class: 'jp-FaaS-route', 'data-version': r.version }, `v${r.version} ${percent(r.weight)}`)
        ])
      )
    );
    const split = versionSplit(f.invocations_by_version);
    const bar = h('div', { class: 'jp-FaaS-splitBar', role: 'img', 'aria-label': `Invocations of ${f.name} by version` },
      ...split.map((s, i) => {
        if (s.share === 0) {
          return null;
        }
        const seg = h('span', { class: `jp-FaaS-splitSeg jp-FaaS-splitSeg-${i % 4}`, title: `${s.version}: ${s.invocations}` });
        seg.style.width = `${s.share * 100}%`;
        return seg;
      })
    );
    return h('div', { class: 'jp-FaaS-versionCard', 'data-function': f.name },
      h('div', { class: 'jp-FaaS-functionHead' }, h('span', { class: 'jp-FaaS-functionName' }, f.name)),
      h('div', { class: 'jp-FaaS-versionList' }, ...published),
      ...aliases,
      split.length
        ? h('div', { class: 'jp-FaaS-split' },
            bar,
            h('div', { class: 'jp-FaaS-splitLegend' }, ...split.map((s, i) =>
              h('span', { class: 'jp-FaaS-splitItem', 'data-version': s.version },
                h('span', { class: `jp-FaaS-splitKey jp-FaaS-splitSeg-${i % 4}` }),
                `${s.version === '$LATEST' ? '$LATEST' : `v${s.version}`} ${count(s.invocations)} (${percent(s.share)})` +
                  (s.errors ? `, ${count(s.errors)} err` : ''))
            )))
        : h('div', { class: 'jp-FaaS-empty' }, 'No invocations yet.')
    );
  }

  private _versions: VersionsModel;
}
