/** Invocations, newest first: filters, the live list, and paging to older rows. */
import { Widget } from '@lumino/widgets';
import { clock, duration, megabytes, shortId } from '../format';
import { Change, FaaSModel } from '../model';
import { IInvocation, InvocationStatus, STATUSES } from '../types';
import { button, fill, h } from './dom';

export class InvocationsView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-invocations');
    this._model = model;
    model.changed.connect(this._onChange, this);
    this._render();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'invocations' || change === 'functions' || change === 'detail') {
      this._render();
    }
  }

  private _render(): void {
    const model = this._model;
    const selected = model.detail?.invocation.request_id;
    const rows = model.invocations.map(inv => this._row(inv, inv.request_id === selected));
    fill(this.node, 
      h('h3', { class: 'jp-FaaS-heading' }, 'Invocations'),
      this._filters(),
      h(
        'table',
        { class: 'jp-FaaS-table' },
        h('thead', {}, h('tr', {}, ...['Request', 'Function', 'Status', 'Duration', 'Max mem', 'Start'].map(t => h('th', {}, t)))),
        h('tbody', {}, ...rows)
      ),
      rows.length === 0 ? h('p', { class: 'jp-FaaS-empty' }, 'No invocations match.') : null,
      model.hasMore ? button('Older…', 'Load the next page of older invocations', () => void model.loadMore(), 'jp-FaaS-more') : null
    );
  }

  private _filters(): HTMLElement {
    const model = this._model;
    const fn = h('select', { class: 'jp-FaaS-filterFunction', 'aria-label': 'Filter by function' }, h('option', { value: '' }, 'All functions'));
    const names = new Set(model.functions.map(f => f.name));
    if (model.filter.function) {
      names.add(model.filter.function);
    }
    for (const name of [...names].sort()) {
      fn.append(h('option', { value: name }, name));
    }
    fn.value = model.filter.function ?? '';
    const status = h('select', { class: 'jp-FaaS-filterStatus', 'aria-label': 'Filter by status' }, h('option', { value: '' }, 'Any status'), ...STATUSES.map(s => h('option', { value: s }, s)));
    status.value = model.filter.status ?? '';
    const apply = () =>
      void model.setFilter({ function: fn.value || undefined, status: (status.value || undefined) as InvocationStatus | undefined });
    fn.addEventListener('change', apply);
    status.addEventListener('change', apply);
    return h('div', { class: 'jp-FaaS-filters' }, fn, status);
  }

  private _row(inv: IInvocation, selected: boolean): HTMLElement {
    const tr = h(
      'tr',
      { class: `jp-FaaS-row${selected ? ' jp-mod-selected' : ''}`, 'data-request-id': inv.request_id, title: inv.request_id },
      h('td', { class: 'jp-FaaS-rid' }, shortId(inv.request_id)),
      h('td', {}, inv.function),
      h('td', {}, h('span', { class: `jp-FaaS-status jp-FaaS-status-${inv.status}` }, inv.status)),
      h('td', {}, duration(inv.duration_ms)),
      h('td', {}, megabytes(inv.max_memory_used_mb)),
      h('td', {}, clock(inv.started_at ?? inv.created_at))
    );
    tr.addEventListener('click', () => void this._model.select(inv.request_id));
    return tr;
  }

  private _model: FaaSModel;
}
