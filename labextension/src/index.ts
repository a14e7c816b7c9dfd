import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Widget } from '@lumino/widgets';
import { lambdaIcon } from './icon';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-faas:panel',
  description: 'The Lambda side panel: functions, invocations, logs and metrics.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const panel = new Widget();
    panel.id = 'jupyter-faas-panel';
    panel.title.icon = lambdaIcon;
    panel.title.caption = 'Lambda';
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);
  }
};

export default plugin;
