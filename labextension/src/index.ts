import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EventFeed } from './feed';
import { eventsURL, restAPI } from './handler';
import { FaaSModel } from './model';
import { FaaSPanel } from './panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-faas:panel',
  description: 'The Lambda side panel: functions, invocations, logs and metrics.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const panel = new FaaSPanel(new FaaSModel(restAPI), new EventFeed(eventsURL()));
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);
  }
};

export default plugin;
