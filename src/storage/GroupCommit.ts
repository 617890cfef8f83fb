/**
 * Group commit: requests submitted during one event-loop tick are handed to `flush`
 * together, so concurrent callers share one database round trip and one COMMIT. Each
 * caller's promise settles with its own result, only after its batch has run.
 */
export type BatchOutcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

export class GroupCommit<Q, R> {
  private pending: { request: Q; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  private running = 0;

  constructor(
    private readonly flush: (requests: Q[]) => Promise<BatchOutcome<R>[]>,
    private readonly options: {
      /** Largest batch; more waiting requests go in the next one. */
      maxBatch: number;
      /** Batches in flight at once (each holds one connection). */
      maxConcurrent: number;
      /** Called with each batch's size, for metrics. */
      onBatch?: (size: number) => void;
    },
  ) {}

  submit(request: Q): Promise<R> {
    return new Promise((resolve, reject) => {
      this.pending.push({ request, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running >= this.options.maxConcurrent || this.pending.length === 0) return;
    this.scheduled = true;
    // setImmediate runs after the I/O callbacks of this loop turn: everything that arrived
    // in the same read joins the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.runBatch();
    });
  }

  private async runBatch(): Promise<void> {
    const batch = this.pending.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    this.running++;
    this.options.onBatch?.(batch.length);
    try {
      const outcomes = await this.flush(batch.map((b) => b.request));
      batch.forEach((b, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) b.resolve(outcome.value);
        else b.reject(outcome.error);
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.running--;
      this.schedule();
    }
  }
}
