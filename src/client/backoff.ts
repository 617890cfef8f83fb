/** Exponential backoff with full jitter: attempt 0 → up to `baseMs`, doubling to `maxMs`. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  // Never below half the ceiling, so a retry is never immediate.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** A sleep that `wake()` (or closing) cuts short. */
export class Sleeper {
  private timers = new Set<{ timer: ReturnType<typeof setTimeout>; resolve: () => void }>();

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => this.done(entry), ms), resolve };
      this.timers.add(entry);
    });
  }

  /** Ends every current sleep now. */
  wake(): void {
    for (const entry of [...this.timers]) this.done(entry);
  }

  private done(entry: { timer: ReturnType<typeof setTimeout>; resolve: () => void }): void {
    clearTimeout(entry.timer);
    this.timers.delete(entry);
    entry.resolve();
  }
}
