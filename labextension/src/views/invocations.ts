/** Invocations, newest first: filters, the live list, and paging to older rows. */
import { Widget } from '@lumino/widgets';
import { shortAddress, workerOf } from '../cluster';
import { clock, duration, megabytes, shortId } from '../format';
import { Change, FaaSModel } from '../model';
import { IInvocation, InvocationStatus, STATUSES } from '../types';
import { button, fill, h } from './dom';

/**
 * [class suffix, header, tooltip]. In a narrow sidebar the table drops Max mem, then
 * Duration (base.css, by the table's own width); the detail always shows both.
 */
const COLUMNS: [string, string, string][] = [
  ['request', 'Request', 'The last characters of the request id (hover a row for all of it)'],
  ['function', 'Function', 'Function'],
  ['status', 'Status', 'Status'],
  ['trigger', 'Trigger', 'What invoked it (direct, async, schedule, url, file, queue) and, after a retry, its attempt'],
  ['worker', 'Worker', 'The Dask worker that ran it (shown while a listed invocation ran on a Dask cluster)'],
  ['duration', 'Duration', 'Duration'],
  ['memory', 'Max mem', 'Max memory used'],
  ['start', 'Start', 'Start time']
];

/** ``schedule``, ``async #2`` (its second attempt), ``direct``. */
export function triggerText(inv: IInvocation): string {
  const what = inv.triggered_by ?? 'direct';
  return (inv.attempts ?? 0) > 1 ? `${what} #${inv.attempts}` : what;
}

export class InvocationsView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-invocations');
    this._model = model;
    // The controls are built once: rows are redrawn on every event batch, and a select
    // redrawn under the user's pointer would close while they choose.
    this._function = h('select', { class: 'jp-FaaS-filterFunction', 'aria-label': 'Filter by function' });
    this._status = h(
      'select',
      { class: 'jp-FaaS-filterStatus', 'aria-label': 'Filter by status' },
      h('option', { value: '' }, 'Any status'),
      ...STATUSES.map(s => h('option', { value: s }, s))
    );
    const apply = () =>
      void model.setFilter({
        function: this._function.value || undefined,
        status: (this._status.value || undefined) as InvocationStatus | undefined
      });
    this._function.addEventListener('change', apply);
    this._status.addEventListener('change', apply);
    this._body = h('tbody');
    this._table = h(
      'table',
      { class: 'jp-FaaS-table' },
      h('thead', {}, h('tr', {}, ...COLUMNS.map(([key, label, title]) => h('th', { class: `jp-FaaS-col-${key}`, title }, label)))),
      this._body
    );
    this._box = h('div', { class: 'jp-FaaS-tableBox' }, this._table);
    this._footer = h('div');
    fill(this.node, h('h3', { class: 'jp-FaaS-heading' }, 'Invocations'), h('div', { class: 'jp-FaaS-filters' }, this._function, this._status), this._box, this._footer);
    model.changed.connect(this._onChange, this);
    this._renderFunctions();
    this._renderRows();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'functions') {
      this._renderFunctions();
    } else if (change === 'invocations' || change === 'detail') {
      this._renderRows();
    }
  }

  private _renderFunctions(): void {
    const model = this._model;
    const names = new Set(model.functions.map(f => f.name));
    if (model.filter.function) {
      names.add(model.filter.function);
    }
    const sorted = [...names].sort();
    const key = sorted.join('\n');
    if (key !== this._functionsKey) {
      this._functionsKey = key;
      fill(this._function, h('option', { value: '' }, 'All functions'), ...sorted.map(n => h('option', { value: n }, n)));
    }
    this._function.value = model.filter.function ?? '';
  }

  private _renderRows(): void {
    const model = this._model;
    const selected = model.detail?.invocation.request_id;
    fill(this._body, ...model.invocations.map(inv => this._row(inv, inv.request_id === selected)));
    // The worker column shows while a listed invocation ran on a Dask worker.
    this._table.classList.toggle('jp-mod-workers', model.invocations.some(inv => workerOf(inv.environment_id) !== null));
    this._status.value = model.filter.status ?? '';
    fill(
      this._footer,
      model.invocations.length === 0 ? h('p', { class: 'jp-FaaS-empty' }, 'No invocations match.') : null,
      model.hasMore ? button('Older…', 'Load the next page of older invocations', () => void model.loadMore(), 'jp-FaaS-more') : null
    );
  }

  private _row(inv: IInvocation, selected: boolean): HTMLElement {
    const tr = h(
      'tr',
      { class: `jp-FaaS-row${selected ? ' jp-mod-selected' : ''}`, 'data-request-id': inv.request_id, title: inv.request_id },
      h('td', { class: 'jp-FaaS-col-request jp-FaaS-rid' }, shortId(inv.request_id)),
      h('td', { class: 'jp-FaaS-col-function', title: inv.function }, inv.function),
      h('td', { class: 'jp-FaaS-col-status' }, h('span', { class: `jp-FaaS-status jp-FaaS-status-${inv.status}` }, inv.status)),
      h('td', { class: 'jp-FaaS-col-trigger' }, triggerText(inv)),
      this._workerCell(inv),
      h('td', { class: 'jp-FaaS-col-duration' }, duration(inv.duration_ms)),
      h('td', { class: 'jp-FaaS-col-memory' }, megabytes(inv.max_memory_used_mb)),
      h('td', { class: 'jp-FaaS-col-start' }, clock(inv.started_at ?? inv.created_at))
    );
    tr.addEventListener('click', () => void this._model.select(inv.request_id));
    return tr;
  }

  private _workerCell(inv: IInvocation): HTMLElement {
    const worker = workerOf(inv.environment_id);
    const text = worker === null ? '' : shortAddress(worker);
    return h('td', { class: 'jp-FaaS-col-worker', title: text, 'data-worker': worker ?? '' }, text);
  }

  private _model: FaaSModel;
  private _function: HTMLSelectElement;
  private _status: HTMLSelectElement;
  private _body: HTMLTableSectionElement;
  private _table: HTMLTableElement;
  private _box: HTMLDivElement;
  private _footer: HTMLDivElement;
  private _functionsKey = '';
}
