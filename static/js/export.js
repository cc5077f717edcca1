// Taking things out of the page: a run's metrics as CSV or JSON (the server writes them), any
// chart as a PNG, and the `mnist-lab train` command that reproduces a run's config.

import { api } from './api.js';
import { cliCommand, runName } from './configs.js';
import { on, state } from './state.js';
import { notify } from './toast.js';
import { charts } from './training.js';

const $ = (id) => document.getElementById(id);
const CHARTS = { loss: 'loss', 'epoch-loss': 'epochLoss', accuracy: 'accuracy' };

/** Save `url` under `filename` through a temporary link (works for data: and same-origin URLs). */
export function download(url, filename) {
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
}

/**
 * Put the run's CLI command on the clipboard and show it in `preview` (when given), so that
 * it can also be selected by hand where the clipboard is not available.
 */
export async function copyCli(run, preview = null) {
  const command = cliCommand(run.config);
  if (!command) {
    notify('The server has not said which command-line options it knows yet; try again in a moment.', { kind: 'error' });
    return null;
  }
  if (preview) {
    preview.textContent = command;
    preview.hidden = false;
  }
  try {
    await navigator.clipboard.writeText(command);
    notify(`Copied: ${command}`, { kind: 'success', key: `cli-${run.id}` });
  } catch {
    notify(`Copy this command: ${command}`, { kind: 'info', key: `cli-${run.id}`, timeout: 15000 });
  }
  return command;
}

function renderTools() {
  const run = state.watched?.run;
  $('run-tools').hidden = !run;
  if (!run) return;
  $('export-csv').href = api.metricsUrl(run.id, 'csv');
  $('export-csv').download = `run-${run.id}-metrics.csv`;
  $('export-csv').setAttribute('aria-label', `Metrics CSV of run ${run.id}`);
  $('export-json').href = api.metricsUrl(run.id, 'json');
  $('export-json').download = `run-${run.id}-metrics.json`;
  $('export-json').setAttribute('aria-label', `Metrics JSON of run ${run.id}`);
  const preview = $('cli-preview');
  if (preview.dataset.runId !== String(run.id)) {
    preview.hidden = true;
    preview.textContent = '';
    preview.dataset.runId = String(run.id);
  }
  $('copy-cli').title = `The mnist-lab train command for the config of run #${run.id} (${runName(run)})`;
}

export function initExport() {
  $('copy-cli').addEventListener('click', () => {
    const run = state.watched?.run;
    if (run) copyCli(run, $('cli-preview'));
  });
  for (const button of document.querySelectorAll('[data-testid="export-png"]')) {
    button.addEventListener('click', () => {
      const chart = charts[CHARTS[button.dataset.chart]];
      const run = state.watched?.id;
      download(chart.toPng(), `mnist-lab${run ? `-run-${run}` : ''}-${button.dataset.chart}.png`);
    });
  }
  on('watched', renderTools);
  on('options', renderTools);
  renderTools();
}


