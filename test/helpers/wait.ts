/** Time in tests: wait on a condition, never on the clock, except for the two pauses below. */

/** A plain pause: for pacing a load or a retry, never to wait for something to happen (use waitFor). */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once nothing more can arrive soon: a fixed quiet period, for "nothing came" checks. */
export const quiet = (ms = 300): Promise<void> => sleep(ms);

/**
 * Polls `condition` (sync or async) every `intervalMs` until it holds. Past `timeoutMs` it
 * throws "timed out after N ms waiting for <what>"; `what` may be a function, called then,
 * to say what the state was (e.g. `() => \`acked=${n}\``). An error thrown by the condition
 * fails at once.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 10_000,
  intervalMs = 10,
): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * `work`, or an error naming `what` after `timeoutMs`: for a step with no timeout of its own
 * (a page.evaluate, a close), so a hang fails the step instead of the whole test's timeout.
 */
export function within<T>(work: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
