/** Time, injected wherever it decides something (expiry, timestamps) so tests can move it. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
