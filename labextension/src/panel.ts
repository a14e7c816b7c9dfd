/** The sidebar widget: a thin column of the views over one model and one event feed. */
import { Panel, Widget } from '@lumino/widgets';
import { EventFeed } from './feed';
import { lambdaIcon } from './icon';
import { Change, FaaSModel } from './model';
import { ClusterView } from './views/cluster';
import { DetailView } from './views/detail';
import { fill, h } from './views/dom';
import { FunctionsView } from './views/functions';
import { InvocationsView } from './views/invocations';
import { MetricsView } from './views/metrics';
import { TriggersView } from './views/triggers';
import { VersionsView } from './views/versions';
import { PANEL_VERSION } from './version';

class StatusLine extends Widget {
  constructor(private _model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-statusLine');
    _model.changed.connect((_, change: Change) => change === 'status' && this._render());
    this._render();
  }

  private _render(): void {
    const m = this._model;
    fill(this.node,
      m.versionProblem ? h('div', { class: 'jp-FaaS-versionProblem', role: 'alert' }, m.versionProblem) : null,
      h('span', { class: `jp-FaaS-live ${m.connected ? 'jp-mod-live' : ''}`, title: m.connected ? 'Live: updates are pushed' : 'Not connected: reconnecting' }, m.connected ? '● live' : '○ offline'),
      m.error ? h('span', { class: 'jp-FaaS-errorLine' }, m.error) : null
    );
  }
}

export class FaaSPanel extends Panel {
  constructor(model: FaaSModel, feed: EventFeed) {
    super();
    this.id = 'jupyter-faas-panel';
    this.addClass('jp-FaaS-panel');
    this.title.icon = lambdaIcon;
    this.title.caption = 'Lambda';
    this._model = model;
    this._feed = feed;
    const header = new Widget({ node: h('div', { class: 'jp-FaaS-title' }, h('h2', {}, 'Lambda')) });
    for (const w of [header, new StatusLine(model), new FunctionsView(model), new TriggersView(model), new InvocationsView(model), new DetailView(model), new ClusterView(model), new MetricsView(model), new VersionsView(model)]) {
      this.addWidget(w);
    }
    void model.checkVersions(PANEL_VERSION);
    feed.received.connect((_, events) => model.applyEvents(events));
    feed.connection.connect((_, up) => {
      model.setConnected(up);
      if (up) {
        void model.reload(); // events sent while the feed was down are gone
      }
    });
    model.changed.connect((_, change: Change) => {
      if (change === 'detail') {
        feed.watch(model.watched);
      }
    });
  }

  dispose(): void {
    this._feed.dispose();
    this._model.dispose();
    super.dispose();
  }

  private _model: FaaSModel;
  private _feed: EventFeed;
}
