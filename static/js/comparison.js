// While runs are compared on the charts: a table of the settings in which their configs differ
// (and only those), one column per run in its chart colour.

import { seriesColor } from './chart.js';
import { configDiff, fieldLabel, formatValue, runLabel } from './configs.js';
import { on } from './state.js';
import { plottedRuns } from './training.js';

const $ = (id) => document.getElementById(id);

function render() {
  const runs = plottedRuns();
  const block = $('config-diff-block');
  block.hidden = runs.length < 2;
  if (runs.length < 2) return;
  const diff = configDiff(runs.map(({ data }) => data.run));
  const table = $('config-diff');
  const head = document.createElement('thead');
  const headRow = document.createElement('tr');
  const corner = document.createElement('th');
  corner.scope = 'col';
  corner.textContent = 'Setting';
  headRow.append(corner);
  for (const { data, colorIndex } of runs) {
    const th = document.createElement('th');
    th.scope = 'col';
    const swatch = document.createElement('span');
    swatch.className = 'compare-swatch';
    swatch.setAttribute('aria-hidden', 'true');
    swatch.style.background = seriesColor(colorIndex);
    th.append(swatch, document.createTextNode(runLabel(data.run)));
    headRow.append(th);
  }
  head.append(headRow);
  const body = document.createElement('tbody');
  for (const { field, values } of diff) {
    const tr = document.createElement('tr');
    tr.dataset.field = field;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = fieldLabel(field);
    tr.append(th);
    for (const value of values) {
      const td = document.createElement('td');
      td.textContent = formatValue(value);
      tr.append(td);
    }
    body.append(tr);
  }
  table.replaceChildren(head, body);
  table.hidden = diff.length === 0;
  $('config-diff-same').hidden = diff.length > 0;
}

export function initComparison() {
  on('compare', render);
  on('watched', render);
  on('runs', render);
  on('options', render);
  render();
}
