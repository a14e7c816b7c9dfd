/** Functions: one card per function with its configuration, figures and actions. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { isProblem, provisionedText, snapshotText } from '../environments';
import { cost, count, duration, gbSeconds } from '../format';
import { Change, FaaSModel } from '../model';
import { IFunctionStats } from '../types';
import { button, fill, h } from './dom';

export class FunctionsView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-functions');
    this._model = model;
    model.changed.connect(this._onChange, this);
    this._render();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'functions' || change === 'invoke') {
      this._render();
    }
  }

  private _render(): void {
    const fns = this._model.functions;
    fill(this.node, 
      h('h3', { class: 'jp-FaaS-heading' }, `Functions (${fns.length})`),
      fns.length === 0
        ? h('p', { class: 'jp-FaaS-empty' }, 'No functions yet: deploy one with @faas.function or %%lambda.')
        : h('div', { class: 'jp-FaaS-cardList' }, ...fns.map(f => this._card(f)))
    );
  }

  private _card(f: IFunctionStats): HTMLElement {
    const stat = (key: string, label: string, value: string) =>
      h('div', { class: 'jp-FaaS-stat', 'data-stat': key }, h('span', { class: 'jp-FaaS-statLabel' }, label), h('span', { class: 'jp-FaaS-statValue' }, value));
    const card = h(
      'div',
      { class: 'jp-FaaS-function', 'data-function': f.name },
      h(
        'div',
        { class: 'jp-FaaS-functionHead' },
        h('span', { class: 'jp-FaaS-functionName' }, f.name),
        h(
          'span',
          { class: 'jp-FaaS-functionConfig' },
          `v${f.version} · ${f.memory} MB · ${f.timeout} s · ` +
            (f.concurrency === null ? 'unreserved' : `reserved ${f.concurrency}`)
        ),
        h(
          'span',
          { class: 'jp-FaaS-actions' },
          button('Invoke', `Invoke ${f.name} with a JSON test event`, () => this._toggleInvoke(f.name)),
          button('Metrics', `Chart ${f.name}'s metrics`, () => void this._model.openMetrics(f.name)),
          button('Delete', `Delete ${f.name} and all its versions`, () => void this._delete(f.name), 'jp-mod-warn')
        )
      ),
      h(
        'div',
        { class: 'jp-FaaS-stats' },
        stat('invocations', 'Invocations', count(f.invocations)),
        stat('errors', 'Errors', count(f.errors)),
        stat('throttles', 'Throttles', count(f.throttles)),
        stat('p50', 'p50', duration(f.duration_p50_ms)),
        stat('p99', 'p99', duration(f.duration_p99_ms)),
        stat('gb_seconds', 'GB-s', gbSeconds(f.gb_seconds)),
        stat('cost', 'Est. cost', cost(f.cost_usd))
      ),
      this._environments(f)
    );
    if (this._invokeOpen === f.name) {
      card.append(this._invokeForm(f.name));
    }
    return card;
  }

  /** Provisioned concurrency and the snapshot state, when the function has either. */
  private _environments(f: IFunctionStats): HTMLElement | null {
    const provisioned = f.provisioned ?? [];
    if (provisioned.length === 0 && !f.snapshot) {
      return null;
    }
    const problem = (item: Parameters<typeof isProblem>[0]) => (isProblem(item) ? ' jp-mod-error' : '');
    return h(
      'div',
      { class: 'jp-FaaS-envs' },
      ...provisioned.map(p =>
        h('span', { class: `jp-FaaS-provisioned${problem(p)}`, 'data-qualifier': p.qualifier, 'data-status': p.status,
                    title: `${p.environments.length} environment(s) of engine version ${p.versions.join(', ')}, INIT done` },
          provisionedText(p))
      ),
      f.snapshot
        ? h('span', { class: `jp-FaaS-snapshot${problem(f.snapshot)}`, 'data-state': f.snapshot.state }, snapshotText(f.snapshot))
        : null
    );
  }

  private _toggleInvoke(name: string): void {
    this._invokeOpen = this._invokeOpen === name ? null : name;
    this._render();
  }

  private _invokeForm(name: string): HTMLElement {
    const text = h('textarea', { class: 'jp-FaaS-event', rows: '4', spellcheck: 'false', 'aria-label': 'Test event (JSON)' });
    text.value = this._eventText.get(name) ?? '{}';
    text.addEventListener('input', () => this._eventText.set(name, text.value));
    const outcome = this._model.invokeOutcome;
    let result: HTMLElement | null = null;
    if (outcome && outcome.name === name) {
      if (outcome.pending) {
        result = h('div', { class: 'jp-FaaS-invokeResult' }, 'Invoking…');
      } else if (outcome.error) {
        result = h('div', { class: 'jp-FaaS-invokeResult jp-mod-error' }, outcome.error);
      } else if (outcome.result) {
        const r = outcome.result;
        const body = r.status === 'succeeded' ? JSON.stringify(r.result, null, 2) : `${r.error?.errorType}: ${r.error?.errorMessage}`;
        result = h('div', { class: `jp-FaaS-invokeResult jp-FaaS-status-${r.status}` }, h('div', {}, `${r.status} · ${r.request_id}`), h('pre', {}, body));
      }
    }
    return h(
      'div',
      { class: 'jp-FaaS-invoke' },
      h('label', {}, 'Test event (JSON)'),
      text,
      h('div', {}, button('Run', `Invoke ${name} with this event and wait for the result`, () => void this._model.invoke(name, text.value), 'jp-mod-accept')),
      result
    );
  }

  private async _delete(name: string): Promise<void> {
    const answer = await showDialog({
      title: `Delete ${name}?`,
      body: 'Its versions are deleted and its environments stopped. Its invocations and logs stay in the store.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (answer.button.accept) {
      await this._model.deleteFunction(name);
    }
  }

  private _model: FaaSModel;
  private _invokeOpen: string | null = null;
  private _eventText = new Map<string, string>();
}
