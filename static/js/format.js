// How numbers, durations and configs read on the page. One place, so every widget says it alike.

import { network } from './state.js';

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export const formatInteger = (value) => (Number.isFinite(value) ? integer.format(value) : '–');

export function formatPercent(fraction, digits = 1) {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : '–';
}

export function formatLoss(value) {
  if (!Number.isFinite(value)) return '–';
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(3) : value.toPrecision(3);
}

/** 75 -> "1m 15s"; 3725 -> "1h 2m"; 4.2 -> "4.2s". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${String(rest).padStart(2, '0')}s`;
  return `${rest}s`;
}

export function formatRelativeTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const seconds = (Date.now() - date.getTime()) / 1000;
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

/** "784 → 256 → 10" for hidden layers [256] (the sizes of GET /api/options `network`). */
export const architecture = (hiddenLayers) =>
  [network()?.inputs ?? '?', ...(hiddenLayers ?? []), network()?.classes ?? '?'].join(' → ');

/** A one-line summary of a run config: the choices that change what a run does. */
export function configSummary(config) {
  if (!config) return '';
  const parts = [architecture(config.hidden_layers), config.activation, config.optimizer];
  parts.push(`lr ${config.learning_rate}${config.lr_schedule && config.lr_schedule !== 'constant' ? ` ${config.lr_schedule}` : ''}`);
  parts.push(`batch ${config.batch_size}`);
  parts.push(`${config.epochs} epoch${config.epochs === 1 ? '' : 's'}`);
  if (config.dropout) parts.push(`dropout ${config.dropout}`);
  if (config.weight_decay) parts.push(`wd ${config.weight_decay}`);
  if (config.batch_norm) parts.push('batch norm');
  const augmentation = config.augmentation ?? {};
  if (Object.values(augmentation).some((value) => value > 0)) parts.push('augmented');
  return parts.join(' · ');
}
