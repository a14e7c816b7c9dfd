/** Metrics charts (chart.js): invocations, errors and throttles; durations; concurrency. */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip
} from 'chart.js';
import { Widget } from '@lumino/widgets';
import { clock } from '../format';
import { Change, FaaSModel, METRICS_WINDOWS } from '../model';
import { IMetrics } from '../types';
import { fill, h } from './dom';

Chart.register(BarController, BarElement, CategoryScale, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);

function windowLabel(minutes: number): string {
  return minutes < 60 ? `${minutes} minutes` : minutes < 1440 ? `${minutes / 60} hour${minutes > 60 ? 's' : ''}` : `${minutes / 1440} day`;
}

/** Colours from JupyterLab's theme variables, so charts follow light and dark themes. */
function themeColor(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

export class MetricsView extends Widget {
  constructor(model: FaaSModel) {
    super();
    this.addClass('jp-FaaS-metrics');
    this._model = model;
    // Built once, like the invocation filters: only the function options change.
    this._function = h('select', { class: 'jp-FaaS-metricsFunction', 'aria-label': 'Function to chart' });
    this._window = h('select', { class: 'jp-FaaS-metricsWindow', 'aria-label': 'Window' }, ...METRICS_WINDOWS.map(m => h('option', { value: String(m) }, windowLabel(m))));
    // A function chosen here opens on the window its data needs; a window chosen is kept.
    this._function.addEventListener('change', () => {
      if (this._function.value) {
        void model.openMetrics(this._function.value);
      }
    });
    this._window.addEventListener('change', () => {
      if (this._function.value) {
        void model.loadMetrics(this._function.value, Number(this._window.value));
      }
    });
    this._canvases = [0, 1, 2].map(i => h('canvas', { class: 'jp-FaaS-chart', 'data-chart': String(i) }));
    fill(
      this.node,
      h('h3', { class: 'jp-FaaS-heading' }, 'Metrics'),
      h('div', { class: 'jp-FaaS-filters' }, this._function, this._window),
      ...this._canvases.map(c => h('div', { class: 'jp-FaaS-chartBox' }, c))
    );
    model.changed.connect(this._onChange, this);
    this._renderFunctions();
    this._draw();
  }

  dispose(): void {
    this._charts.forEach(c => c.destroy());
    super.dispose();
  }

  private _onChange(_: FaaSModel, change: Change): void {
    if (change === 'functions') {
      this._renderFunctions();
    } else if (change === 'metrics') {
      this._renderFunctions();
      this._draw();
    }
  }

  private _renderFunctions(): void {
    const model = this._model;
    const names = model.functions.map(f => f.name);
    const key = names.join('\n');
    if (key !== this._functionsKey) {
      this._functionsKey = key;
      fill(this._function, h('option', { value: '' }, 'Choose a function'), ...names.map(n => h('option', { value: n }, n)));
    }
    this._function.value = model.metricsFunction ?? '';
    this._window.value = String(model.metricsMinutes);
  }

  private _draw(): void {
    const m = this._model.metrics;
    const boxes = this.node.querySelectorAll<HTMLElement>('.jp-FaaS-chartBox');
    boxes.forEach(b => (b.style.display = m ? '' : 'none'));
    if (!m) {
      return;
    }
    const labels = m.timestamps.map(t => clock(t).slice(0, 5));
    const data = this._series(m);
    data.forEach((datasets, i) => {
      const chart = this._charts[i];
      if (chart) {
        chart.data.labels = labels;
        chart.data.datasets = datasets as any;
        chart.update('none');
      } else {
        this._charts[i] = new Chart(this._canvases[i], {
          type: i === 0 ? 'bar' : 'line',
          data: { labels, datasets: datasets as any },
          options: {
            animation: false,
            responsive: true,
            maintainAspectRatio: false,
            spanGaps: true,
            plugins: { legend: { labels: { boxWidth: 10, color: themeColor('--jp-ui-font-color1', '#333') } } },
            scales: {
              x: { ticks: { maxTicksLimit: 6, color: themeColor('--jp-ui-font-color2', '#666') } },
              y: { beginAtZero: true, ticks: { color: themeColor('--jp-ui-font-color2', '#666') } }
            }
          }
        });
      }
    });
  }

  private _series(m: IMetrics): object[][] {
    const blue = themeColor('--jp-brand-color1', '#1976d2');
    const red = themeColor('--jp-error-color1', '#d32f2f');
    const orange = themeColor('--jp-warn-color1', '#f57c00');
    const green = themeColor('--jp-success-color1', '#388e3c');
    const line = (label: string, values: (number | null)[], color: string) => ({
      label,
      data: values,
      borderColor: color,
      backgroundColor: color,
      pointRadius: 0,
      borderWidth: 1.5
    });
    return [
      [
        { label: 'Invocations', data: m.invocations, backgroundColor: blue },
        { label: 'Errors', data: m.errors, backgroundColor: red },
        { label: 'Throttles', data: m.throttles, backgroundColor: orange }
      ],
      [
        line('Duration p50 (ms)', m.duration_p50_ms, green),
        line('p90', m.duration_p90_ms, orange),
        line('p99', m.duration_p99_ms, red)
      ],
      [line('Concurrent executions (max)', m.concurrent_executions, blue)]
    ];
  }

  private _model: FaaSModel;
  private _function: HTMLSelectElement;
  private _window: HTMLSelectElement;
  private _functionsKey = '';
  private _charts: Chart[] = [];
  private _canvases: HTMLCanvasElement[];
}
