// How a run's config reads: its name (the one the user gave, else preset plus what differs from
// it), the fields in which several runs differ, and the `mnist-lab train` line that reproduces it.
// The field -> option table comes from the server (GET /api/options `cli_flags`, which is the
// CLI's own table), never from here.

import { state } from './state.js';

/** A config as flat {field: value}; augmentation fields as "augmentation.<name>". */
export function flattenConfig(config) {
  const flat = {};
  for (const [key, value] of Object.entries(config ?? {})) {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [inner, innerValue] of Object.entries(value)) flat[`${key}.${inner}`] = innerValue;
    } else flat[key] = value;
  }
  return flat;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const SHORT = {
  hidden_layers: (v) => (v.length ? `hidden ${v.join('-')}` : 'no hidden layer'),
  learning_rate: (v) => `lr ${v}`,
  batch_size: (v) => `batch ${v}`,
  epochs: (v) => `${v} epoch${v === 1 ? '' : 's'}`,
  weight_decay: (v) => `wd ${v}`,
  batch_norm: (v) => (v ? 'batch norm' : 'no batch norm'),
  lr_schedule: (v) => `${v} schedule`,
  warmup_epochs: (v) => `warm-up ${v}`,
};

/** "lr 0.2", "dropout 0.1", "shift 2": one field's value in a few characters. */
export function shortSetting(field, value) {
  if (SHORT[field]) return SHORT[field](value);
  const name = field.replace(/^augmentation\./, '').replaceAll('_', ' ');
  return typeof value === 'string' ? value : `${name} ${value}`;
}

/** A field's name as a person reads it ("learning rate", "augmentation: shift"). */
export function fieldLabel(field) {
  const [head, tail] = field.split('.');
  return tail ? `${head}: ${tail.replaceAll('_', ' ')}` : head.replaceAll('_', ' ');
}

export function formatValue(value) {
  if (Array.isArray(value)) return value.length ? `[${value.join(', ')}]` : '[] (none)';
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (value === undefined || value === null) return '–';
  return String(value);
}

function presetConfig(name) {
  return state.options?.presets?.find((preset) => preset.name === name)?.config ?? null;
}

/** The fields of `config` that differ from its preset's config, in the config's order. */
export function differencesFromPreset(config) {
  const base = presetConfig(config?.preset);
  if (!base) return [];
  const flat = flattenConfig(config);
  const baseFlat = flattenConfig(base);
  return Object.keys(flat).filter((field) => field !== 'preset' && !same(flat[field], baseFlat[field]));
}

/**
 * The name people see for a run: the one given on the server (`run.name`, when the server
 * stores names), else the preset and up to two settings that differ from it ("default · lr 0.2").
 */
export function runName(run) {
  const given = typeof run?.name === 'string' ? run.name.trim() : '';
  if (given) return given;
  const config = run?.config ?? {};
  const preset = config.preset ?? 'custom';
  const differences = differencesFromPreset(config);
  if (!differences.length) return preset;
  const shown = differences.slice(0, 2).map((field) => shortSetting(field, flattenConfig(config)[field]));
  const more = differences.length > 2 ? ` +${differences.length - 2}` : '';
  return `${preset} · ${shown.join(', ')}${more}`;
}

/** "#12 default · lr 0.2": the run's id and name, for legends and titles. */
export const runLabel = (run) => `#${run.id} ${runName(run)}`;

/** The fields in which the configs differ, each with every run's value (the preset first). */
export function configDiff(runs) {
  const flats = runs.map((run) => flattenConfig(run.config));
  const fields = ['preset'];
  for (const flat of flats) for (const field of Object.keys(flat)) if (!fields.includes(field)) fields.push(field);
  return fields
    .filter((field) => flats.some((flat) => !same(flat[field], flats[0][field])))
    .map((field) => ({ field, values: flats.map((flat) => flat[field]) }));
}

const quote = (word) => (/^[\w.,:/=+-]+$/.test(word) ? word : `'${String(word).replaceAll("'", "'\\''")}'`);

/**
 * `mnist-lab train --preset P ...` that trains the same config: the preset, then every field
 * whose value differs from the preset's (all of them when the preset is unknown here), through
 * the server's field -> option table. Null while that table is not known.
 */
export function cliCommand(config) {
  const flags = state.options?.cli_flags;
  if (!flags || !config) return null;
  const base = flattenConfig(presetConfig(config.preset) ?? {});
  const known = Boolean(presetConfig(config.preset));
  const flat = flattenConfig(config);
  const words = ['mnist-lab', 'train'];
  if (config.preset) words.push('--preset', config.preset);
  const augmentFields = Object.keys(flags).filter((field) => field.startsWith('augmentation.'));
  const augmentOff = augmentFields.every((field) => !flat[field]);
  const augmentDiffers = augmentFields.some((field) => !same(flat[field] ?? 0, base[field] ?? 0));
  for (const [field, flag] of Object.entries(flags)) {
    const value = flat[field];
    if (value === undefined) continue;
    if (field.startsWith('augmentation.')) {
      if (augmentOff || (known && !augmentDiffers) || (known && same(value, base[field] ?? 0))) continue;
    } else if (known && same(value, base[field])) continue;
    if (typeof value === 'boolean') words.push(value ? flag : `--no-${flag.slice(2)}`);
    else if (Array.isArray(value)) words.push(flag, ...value.map(String));
    else words.push(flag, String(value));
  }
  if (augmentOff && (!known || augmentDiffers)) words.push('--no-augment');
  return words.map(quote).join(' ');
}
