import { LabIcon } from '@jupyterlab/ui-components';

// A lowercase lambda in JupyterLab's icon colour, so it follows light and dark themes.
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M5.5 21.5 11 9.8 9.6 6.7C9.1 5.6 8.4 5 7.2 5H6V2.6h1.6c2.3 0 3.6 1 4.6 3.2l6.5 13.6c.3.6.7.8 1.3.8h.6v2.3c-.5.1-1 .1-1.6.1-1.7 0-2.6-.7-3.3-2.2l-3.2-7-4.3 9.1z"/>
</svg>`;

export const lambdaIcon = new LabIcon({ name: 'jupyter-faas:lambda', svgstr: svg });
