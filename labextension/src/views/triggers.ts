/**
 * Triggers and dead letters: every trigger (kind, function, spec, enabled, next firing, queue
 * depth and in flight, URL) with Enable/Disable, and the dead-letter list with Redrive.
 *
 * It reads the server itself (through the one ``requestAPI``) when the model says functions or
 * invocations changed, at most once a second: a firing shows as an invocation on the feed.
 */
import { Widget } from '@lumino/widgets';
import { requestAPI } from '../handler';
import { clock } from '../format';
import { Change, FaaSModel } from '../model';
import { IDeadLetter, ITrigger } from '../types';
import { button, fill, h } from './dom';

const REFRESH_MS = 1000;

export function specText(t: ITrigger): string {
  const s = t.spec as Record<string, any>;
  switch (t.kind) {
    case 'schedule':
      return String(s.expression);
    case 'url':
      return `auth=${s.auth}`;
    case 'file':
      return `${s.path}/${s.pattern}`;
    case 'queue':
      return `${s.queue} · batch ${s.batch_size}`;
  }
  return JSON.stringify(s);
}

export function stateText(t: ITrigger): string {
  if (!t.enabled) {
    return 'disabled';
  }
  if (t.kind === 'schedule') {
    return t.next_at ? `next ${clock(t.next_at)}` : 'no next firing';
  }
  if (t.kind === 'queue') {
    return `depth ${t.depth ?? 0} · in flight ${t.in_flight ?? 0}` + (t.dead_letters ? ` · DLQ ${t.dead_letters}` : '');
  }
  if (t.kind === 'url') {
    return t.url ?? '';
  }
  return 'watching';
}

export class TriggersView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-triggers');
    model.changed.connect(this._onChange, this);
    void this.refresh();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'functions' || change === 'invocations') {
      this._soon();
    }
  }

  private _soon(): void {
    if (this._timer !== null) {
      return;
    }
    const wait = Math.max(0, this._last + REFRESH_MS - Date.now());
    this._timer = window.setTimeout(() => {
      this._timer = null;
      void this.refresh();
    }, wait);
  }

  async refresh(): Promise<void> {
    this._last = Date.now();
    try {
      const [t, d] = await Promise.all([
        requestAPI<{ triggers: ITrigger[] }>('triggers'),
        requestAPI<{ dead_letters: IDeadLetter[] }>('dead-letters?limit=50')
      ]);
      this._triggers = t.triggers;
      this._deadLetters = d.dead_letters;
      this._error = null;
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
    }
    this._render();
  }

  private async _act(path: string, init: RequestInit): Promise<void> {
    try {
      await requestAPI(path, init);
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
    }
    await this.refresh();
  }

  private _render(): void {
    const triggers = this._triggers;
    const dead = this._deadLetters;
    fill(
      this.node,
      h('h3', { class: 'jp-FaaS-heading' }, `Triggers (${triggers.length})`),
      this._error ? h('p', { class: 'jp-FaaS-errorLine' }, this._error) : null,
      triggers.length === 0
        ? h('p', { class: 'jp-FaaS-empty' }, 'No triggers: handle.schedule(), .url(), .on_file(), .subscribe().')
        : h('div', {}, ...triggers.map(t => this._trigger(t))),
      dead.length === 0
        ? null
        : h(
            'div',
            { class: 'jp-FaaS-deadLetters' },
            h(
              'h3',
              { class: 'jp-FaaS-heading' },
              `Dead letters (${dead.length}) `,
              button('Redrive all', 'Submit every dead letter again', () =>
                void this._act('dead-letters/redrive', { method: 'POST', body: '{}' })
              )
            ),
            ...dead.map(d => this._deadLetter(d))
          )
    );
  }

  private _trigger(t: ITrigger): HTMLElement {
    return h(
      'div',
      { class: `jp-FaaS-trigger${t.enabled ? '' : ' jp-mod-disabled'}`, 'data-trigger': t.id, 'data-kind': t.kind },
      h('b', {}, t.kind),
      h('span', { class: 'jp-FaaS-functionName' }, t.function),
      h('code', {}, specText(t)),
      h('span', { class: 'jp-FaaS-triggerState' }, stateText(t)),
      h('span', { title: 'events it made' }, `fired ${t.fired}`),
      button(t.enabled ? 'Disable' : 'Enable', `${t.enabled ? 'Disable' : 'Enable'} this ${t.kind} trigger`, () =>
        void this._act(`triggers/${encodeURIComponent(t.id)}`, {
          method: 'PATCH',
          body: JSON.stringify({ enabled: !t.enabled })
        })
      )
    );
  }

  private _deadLetter(d: IDeadLetter): HTMLElement {
    return h(
      'div',
      { class: 'jp-FaaS-deadLetter', 'data-dead-letter': String(d.id), title: d.error_message ?? '' },
      h('span', { class: 'jp-FaaS-functionName' }, d.function),
      h('span', { class: 'jp-FaaS-status jp-FaaS-status-failed' }, d.error_type ?? d.condition),
      h('span', {}, `${d.attempts} attempts · ${clock(d.created_at)}`),
      h('code', {}, (d.input_summary ?? '').slice(0, 60)),
      button('Redrive', 'Submit this event again', () =>
        void this._act('dead-letters/redrive', { method: 'POST', body: JSON.stringify({ ids: [d.id] }) })
      )
    );
  }

  dispose(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
    }
    super.dispose();
  }

  private _triggers: ITrigger[] = [];
  private _deadLetters: IDeadLetter[] = [];
  private _error: string | null = null;
  private _timer: number | null = null;
  private _last = 0;
}
