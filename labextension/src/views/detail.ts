/** One invocation: identity, input, timing, REPORT, error and traceback, and every log line. */
import { Widget } from '@lumino/widgets';
import { clock, duration, megabytes } from '../format';
import { Change, FaaSModel, MAX_LOG_LINES } from '../model';
import { TERMINAL } from '../types';
import { button, fill, h } from './dom';

export class DetailView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-detail');
    this._model = model;
    model.changed.connect(this._onChange, this);
    this._render();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'detail') {
      this._render();
    }
  }

  private _render(): void {
    const d = this._model.detail;
    if (!d) {
      fill(this.node);
      this._shown = null;
      this.hide();
      return;
    }
    this.show();
    const inv = d.invocation;
    const oldLogs = this.node.querySelector('.jp-FaaS-logs');
    const atBottom = !oldLogs || oldLogs.scrollTop + oldLogs.clientHeight >= oldLogs.scrollHeight - 4;
    const field = (label: string, value: string | null | undefined, key: string) =>
      h('div', { class: 'jp-FaaS-field', 'data-field': key }, h('dt', {}, label), h('dd', {}, value ?? '–'));
    const report = d.logs.find(l => l.line.startsWith('REPORT RequestId:'));
    const running = inv.status !== undefined && !TERMINAL.has(inv.status);
    const logs = h('pre', { class: 'jp-FaaS-logs' }, ...d.logs.map(l => h('div', { class: `jp-FaaS-log jp-FaaS-log-${l.stream}` }, l.line)));
    fill(this.node, 
      h(
        'div',
        { class: 'jp-FaaS-detailHead' },
        h('h3', { class: 'jp-FaaS-heading' }, 'Invocation'),
        running ? button('Cancel', 'Cancel this invocation (kills its environment if it is running)', () => void this._model.cancel(inv.request_id), 'jp-mod-warn') : null,
        button('Close', 'Close the detail', () => void this._model.select(null))
      ),
      h(
        'dl',
        { class: 'jp-FaaS-fields' },
        field('Request id', inv.request_id, 'request_id'),
        field('Function', inv.function ? `${inv.function}:${inv.version}` : null, 'function'),
        field('Status', inv.status, 'status'),
        field('Input', inv.input_summary, 'input'),
        field('Type', inv.invocation_type, 'type'),
        field('Start', clock(inv.started_at ?? inv.created_at), 'start'),
        field('Duration', duration(inv.duration_ms), 'duration'),
        field('Billed', inv.billed_duration_ms ? `${inv.billed_duration_ms} ms` : null, 'billed'),
        field('Memory', `${megabytes(inv.max_memory_used_mb)} of ${megabytes(inv.memory_size_mb)}`, 'memory'),
        field('Init', inv.init_duration_ms ? duration(inv.init_duration_ms) : 'warm', 'init')
      ),
      report ? h('div', { class: 'jp-FaaS-report' }, report.line.trim().split('\t').join('  ·  ')) : null,
      inv.error
        ? h(
            'div',
            { class: 'jp-FaaS-error' },
            h('div', { class: 'jp-FaaS-errorType' }, `${inv.error.errorType}: ${inv.error.errorMessage}`),
            inv.error.stackTrace && inv.error.stackTrace.length ? h('pre', { class: 'jp-FaaS-traceback' }, inv.error.stackTrace.join('')) : null
          )
        : null,
      h('h4', {}, `Logs (${d.logs.length}${running ? ', live' : ''})`),
      logs,
      d.droppedLive > 0 || d.hiddenLines > 0
        ? h(
            'div',
            { class: 'jp-FaaS-note' },
            d.logs.length >= MAX_LOG_LINES
              ? `Showing the first ${MAX_LOG_LINES} lines; the store has them all (jupyter faas logs).`
              : `${d.droppedLive} lines came too fast to show live. `,
            button('Reload logs', 'Read the logs again from the store', () => void this._model.select(inv.request_id))
          )
        : null
    );
    if (atBottom) {
      logs.scrollTop = logs.scrollHeight;
    }
    if (inv.request_id !== this._shown) {
      this._shown = inv.request_id;
      this.node.scrollIntoView({ block: 'nearest' }); // it opens below the list
    }
  }

  private _model: FaaSModel;
  private _shown: string | null = null;
}
