// How long a training run still needs, said only once it can be said honestly. A run's first
// seconds are the slowest and least steady (warm-up, and the first validation pass is still
// ahead), so the page says "estimating" until it has measured enough:
// - after a finished epoch: the measured time per epoch (training and validation together),
//   averaged over the last few epochs, times the epochs still to go;
// - before that: the pace of the steps over at least MIN_SECONDS and MIN_STEPS; the validation
//   passes still ahead are not in it, so the page marks it as approximate ("≈").

const MIN_SECONDS = 4;
const MIN_STEPS = 20;
const RECENT_EPOCHS = 3;

/** Steps a second over the window of [time ms, steps done] samples, or null when too short. */
export function stepsPerSecond(pace) {
  if (!pace || pace.length < 2) return null;
  const [t0, s0] = pace[0];
  const [t1, s1] = pace[pace.length - 1];
  if (t1 - t0 < MIN_SECONDS * 1000 || s1 - s0 < MIN_STEPS) return null;
  return (s1 - s0) / ((t1 - t0) / 1000);
}

/**
 * {seconds, basis: 'epochs' | 'pace'} or null ("estimating").
 * stepsDone, stepsTotal, stepsPerEpoch: counts; epochDurations: seconds of each finished epoch;
 * pace: [[time ms, steps done], ...] of the recent live points.
 */
export function estimateRemaining({ stepsDone, stepsTotal, stepsPerEpoch, epochDurations, pace }) {
  if (!stepsTotal || stepsDone >= stepsTotal) return stepsTotal ? { seconds: 0, basis: 'epochs' } : null;
  const remaining = stepsTotal - stepsDone;
  const durations = (epochDurations ?? []).filter(Number.isFinite);
  if (durations.length && stepsPerEpoch) {
    const recent = durations.slice(-RECENT_EPOCHS);
    const perEpoch = recent.reduce((a, b) => a + b, 0) / recent.length;
    return { seconds: (remaining / stepsPerEpoch) * perEpoch, basis: 'epochs' };
  }
  const rate = stepsPerSecond(pace);
  if (!rate) return null;
  return { seconds: remaining / rate, basis: 'pace' };
}
