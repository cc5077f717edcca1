// The view as a URL that can be sent: the watched run, the compared runs, smoothing, log scale
// and x axis (`?run=4&compare=2,3&smooth=0.9&log=1&x=epoch`). Read once at load; rewritten in
// place (no new history entry) whenever the view changes.

import { X_AXES } from './curves.js';
import { on, state } from './state.js';

const positiveInt = (text) => (/^\d+$/.test(text ?? '') ? Number(text) : null);

/** What the URL asks for; anything malformed is left out (the page's defaults apply). */
export function readView(search = location.search) {
  const query = new URLSearchParams(search);
  const smooth = Number(query.get('smooth'));
  const compare = (query.get('compare') ?? '').split(',').map(positiveInt).filter((id) => id !== null);
  return {
    run: positiveInt(query.get('run')),
    compare: [...new Set(compare)],
    smoothing: query.has('smooth') && Number.isFinite(smooth) && smooth >= 0 && smooth < 1 ? smooth : null,
    logScale: query.get('log') === '1',
    xAxis: X_AXES[query.get('x')] ? query.get('x') : 'step',
  };
}

/** The query string of the current view (empty for the defaults). */
export function viewQuery() {
  const query = new URLSearchParams();
  if (state.watched) query.set('run', String(state.watched.id));
  const compared = [...state.compared.keys()].filter((id) => id !== state.watched?.id);
  if (compared.length) query.set('compare', compared.join(','));
  if (state.chart.smoothing !== null) query.set('smooth', String(state.chart.smoothing));
  if (state.chart.logScale) query.set('log', '1');
  if (state.chart.xAxis !== 'step') query.set('x', state.chart.xAxis);
  return query.toString().replaceAll('%2C', ',');
}

function writeView() {
  const query = viewQuery();
  const url = `${location.pathname}${query ? `?${query}` : ''}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(history.state, '', url);
}

/** Apply the URL's chart settings to the state; returns the runs it asks to watch and compare. */
export function initUrl() {
  const view = readView();
  state.chart.smoothing = view.smoothing;
  state.chart.logScale = view.logScale;
  state.chart.xAxis = view.xAxis;
  for (const topic of ['view', 'watched', 'compare']) on(topic, writeView);
  return view;
}
