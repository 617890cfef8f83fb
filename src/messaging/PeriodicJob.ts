import { throttledWarn, type Logger } from "../log";

/**
 * Runs `round` every `intervalMs` (never two at once), forgives a failed round (the next
 * one retries) and lets shutdown wait for the round in progress. Failures are logged at
 * most once per few seconds: during an outage a job that runs several times a second would
 * otherwise fill the log.
 */
export class PeriodicJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private readonly warn: ReturnType<typeof throttledWarn>;

  constructor(
    private readonly name: string,
    private readonly round: () => Promise<number>,
    private readonly intervalMs: number,
    log: Logger,
  ) {
    this.warn = throttledWarn(log);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
    this.timer.unref();
  }

  /** One round now (what the timer calls too); resolves with what the round counted. */
  runOnce(): Promise<number> {
    this.running ??= this.round()
      .catch((err) => {
        this.warn({ err, job: this.name }, "background round failed; the next one retries");
        return 0;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
