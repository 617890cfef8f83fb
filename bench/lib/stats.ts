/** Small numeric helpers shared by the scenarios: percentiles, rates, ratios, rounding. */

export type Summary = { n: number; p50: number | null; p99: number | null; max: number | null };

/** Nearest-rank percentiles of a list of milliseconds (the list is sorted in place). */
export function summarize(values: number[]): Summary {
  if (values.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

/** `a / b`, or null when either side is missing or b is zero. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || b === 0) return null;
  return a / b;
}

export function round(value: number | null | undefined, digits = 2): number | null {
  if (value == null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** An ack this late (from the scheduled or actual send) counts towards a stall episode. */
export const STALL_MS = Number(process.env.BENCH_STALL_MS ?? 100);
/** Slow sends this close together (by scheduled time) belong to one episode. */
const STALL_GAP_MS = 250;

/** Slow sends scheduled from `from` to `to` (ISO wall-clock times), and the slowest ack among them. */
export type Stall = { from: string; to: string; sends: number; worstAckMs: number };

/** Groups (scheduled time, ack latency) pairs into episodes; the 10 worst. */
export function stallsOf(slow: [number, number][]): Stall[] {
  slow.sort((a, b) => a[0] - b[0]);
  const episodes: { from: number; to: number; sends: number; worst: number }[] = [];
  for (const [at, ms] of slow) {
    const last = episodes.at(-1);
    if (last && at - last.to <= STALL_GAP_MS) {
      last.to = at;
      last.sends++;
      last.worst = Math.max(last.worst, ms);
    } else episodes.push({ from: at, to: at, sends: 1, worst: ms });
  }
  const wall = (t: number) => new Date(performance.timeOrigin + t).toISOString();
  return episodes
    .sort((a, b) => b.worst - a.worst)
    .slice(0, 10)
    .map((e) => ({ from: wall(e.from), to: wall(e.to), sends: e.sends, worstAckMs: Math.round(e.worst) }));
}

export { sleep } from "../../test/helpers/wait";
