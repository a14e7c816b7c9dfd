/** One invocation: identity, input, timing, REPORT, error and traceback, and every log line. */
import { Widget } from '@lumino/widgets';
import { initText } from '../environments';
import { workerOf } from '../cluster';
import { clock, duration, megabytes, reportLine } from '../format';
import { Change, FaaSModel, MAX_LOG_LINES } from '../model';
import { ILogLine, TERMINAL } from '../types';
import { button, fill, h } from './dom';
import { triggerText } from './invocations';

export class DetailView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-detail');
    this._model = model;
    this._top = h('div');
    this._logs = h('pre', { class: 'jp-FaaS-logs' });
    this._note = h('div');
    fill(this.node, this._top, this._logs, this._note);
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
      this._shown = null;
      this._renderLogs([], true);
      this.hide();
      return;
    }
    this.show();
    const inv = d.invocation;
    const field = (label: string, value: string | null | undefined, key: string) =>
      h('div', { class: 'jp-FaaS-field', 'data-field': key }, h('dt', {}, label), h('dd', {}, value ?? '–'));
    const running = inv.status !== undefined && !TERMINAL.has(inv.status);
    const fromLogs = d.logs.find(l => l.line.startsWith('REPORT RequestId:'));
    const report = reportLine(inv) ?? fromLogs?.line.trim().split('\t').join('  ·  ');
    fill(
      this._top,
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
        field('Trigger', triggerText(inv) + (inv.attempts ? ` · ${inv.attempts} attempt${inv.attempts === 1 ? '' : 's'}` : ''), 'trigger'),
        workerOf(inv.environment_id) !== null ? field('Worker', workerOf(inv.environment_id), 'worker') : null,
        field('Start', clock(inv.started_at ?? inv.created_at), 'start'),
        field('Duration', duration(inv.duration_ms), 'duration'),
        field('Billed', inv.billed_duration_ms ? `${inv.billed_duration_ms} ms` : null, 'billed'),
        field('Memory', `${megabytes(inv.max_memory_used_mb)} of ${megabytes(inv.memory_size_mb)}`, 'memory'),
        field('Init', initText(inv, duration), 'init')
      ),
      report ? h('div', { class: 'jp-FaaS-report' }, report) : null,
      inv.error
        ? h(
            'div',
            { class: 'jp-FaaS-error' },
            h('div', { class: 'jp-FaaS-errorType' }, `${inv.error.errorType}: ${inv.error.errorMessage}`),
            inv.error.stackTrace && inv.error.stackTrace.length ? h('pre', { class: 'jp-FaaS-traceback' }, inv.error.stackTrace.join('')) : null
          )
        : null,
      h('h4', {}, `Logs (${d.logs.length}${running ? ', live' : ''})`)
    );
    const fresh = inv.request_id !== this._shown;
    this._renderLogs(d.logs, fresh);
    fill(
      this._note,
      d.droppedLive > 0 || d.hiddenLines > 0
        ? h(
            'div',
            { class: 'jp-FaaS-note' },
            d.logs.length >= MAX_LOG_LINES
              ? `Showing the first ${MAX_LOG_LINES} lines; the store has them all (jupyter faas logs). `
              : `${d.droppedLive} lines came too fast to show live. `,
            button('Reload logs', 'Read the logs again from the store', () => void this._model.select(inv.request_id))
          )
        : null
    );
    if (fresh) {
      this._shown = inv.request_id;
      this.node.scrollIntoView({ block: 'nearest' }); // it opens below the list
    }
  }

  /**
   * Lines only ever grow while an invocation streams, so new ones are appended (a flood
   * redraws nothing); a reorder (a backfilled gap) or another invocation redraws them all.
   */
  private _renderLogs(lines: ILogLine[], fresh: boolean): void {
    const pre = this._logs;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const n = this._rendered;
    const extends_ = !fresh && n > 0 && lines.length >= n && lines[n - 1] === this._lastLine;
    const draw = (l: ILogLine) => h('div', { class: `jp-FaaS-log jp-FaaS-log-${l.stream}` }, l.line);
    if (extends_) {
      pre.append(...lines.slice(n).map(draw));
    } else {
      fill(pre, ...lines.map(draw));
    }
    this._rendered = lines.length;
    this._lastLine = lines.length ? lines[lines.length - 1] : null;
    if (atBottom || fresh) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  private _model: FaaSModel;
  private _top: HTMLDivElement;
  private _logs: HTMLPreElement;
  private _note: HTMLDivElement;
  private _shown: string | null = null;
  private _rendered = 0;
  private _lastLine: ILogLine | null = null;
}
