import type { Clock } from "../clock";
import type { PushConfig } from "../config";
import { mediaLabel } from "../media/disposition";
import { throttledWarn, type Logger } from "../log";
import { PeriodicJob } from "./PeriodicJob";
import { noPushMetrics, type ClaimedPush, type PushGateway, type PushKey, type PushMetrics, type PushStore, type PushTarget } from "./pushPorts";

/** Rows claimed at once; a full batch makes the round claim again at once. */
const BATCH = 64;
const MAX_BATCHES_PER_ROUND = 16;
/** Retry delays double from PUSH_RETRY_MIN_MS up to this. */
const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Hands due pushes from the outbox to the gateway. Every node runs one; the claim (FOR
 * UPDATE SKIP LOCKED plus a lease) gives each push to exactly one of them. A round is:
 * claim (one statement, committed), send (no transaction or connection held while the
 * gateway answers or hangs), record the outcomes. Delivery and acknowledgements never wait
 * on any of it.
 *
 * A push is dropped without sending when a device of the recipient confirmed the message,
 * when the message was deleted, expired or is gone, or when the recipient has no pushkeys left. A failed
 * POST (non-2xx, timeout, refused connection, garbage) is retried after
 * PUSH_RETRY_MIN_MS · 2^(attempt-1) (±25 % jitter, at most 5 min) until PUSH_RETRY_FOR_MS
 * after it was first due; then it is dropped and logged.
 */
export class PushWorker {
  private readonly abort = new AbortController();
  private readonly warn: ReturnType<typeof throttledWarn>;
  private readonly job: PeriodicJob;

  constructor(
    private readonly store: PushStore,
    private readonly gateway: PushGateway,
    private readonly clock: Clock,
    private readonly config: PushConfig,
    private readonly log: Logger,
    private readonly metrics: PushMetrics = noPushMetrics,
  ) {
    // Polled often enough that a push goes out within about a quarter of the delay.
    const intervalMs = Math.min(1000, Math.max(50, Math.round(config.delayMs / 4)));
    this.job = new PeriodicJob("push", () => this.round(), intervalMs, log);
    this.warn = throttledWarn(log);
  }

  start(): void {
    this.job.start();
  }

  /** Sends whatever is due now; resolves with how many rows were handled. */
  pushNow(): Promise<number> {
    return this.job.runOnce();
  }

  /** In-flight POSTs are abandoned (their rows due again at once, for whichever node runs next). */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.job.stop();
  }

  /** A failure (the database is down) is PeriodicJob's to log; claimed rows keep their lease. */
  private async round(): Promise<number> {
    let handled = 0;
    for (let i = 0; i < MAX_BATCHES_PER_ROUND && !this.abort.signal.aborted; i++) {
      const n = await this.batch();
      handled += n;
      if (n < BATCH) break;
    }
    return handled;
  }

  /**
   * The lease outlives the longest a send can take (the timeout) with room for recording
   * the outcome; a node that dies mid-send lets another retry once it runs out.
   */
  private leaseMs(): number {
    return 2 * this.config.timeoutMs + 5000;
  }

  private async batch(): Promise<number> {
    const now = this.clock.now();
    const claimed = await this.store.claimDue(now, new Date(now.getTime() + this.leaseMs()), BATCH);
    if (claimed.length === 0) return 0;

    const drop: PushKey[] = [];
    const live: ClaimedPush[] = [];
    const gaveUp: ClaimedPush[] = [];
    for (const c of claimed) {
      const m = c.message;
      // A row claimed past its deadline is still tried once: it was scheduled within the
      // window (or its lease ran out with no outcome recorded). Giving up is decided on failure.
      if (!m || m.deleted || m.status !== "sent" || m.expiresAt.getTime() <= now.getTime()) drop.push(c);
      else live.push(c);
    }
    let cancelled = drop.length;

    const targets = live.length > 0 ? await this.store.targets([...new Set(live.map((c) => c.recipient))], now) : new Map<string, PushTarget>();
    const sends: Promise<void>[] = [];
    const done: PushKey[] = [];
    const retry: (PushKey & { dueAt: Date })[] = [];
    const rejected: { userId: string; pushkey: string }[] = [];
    for (const c of live) {
      const target = targets.get(c.recipient);
      if (!target || target.devices.length === 0) {
        drop.push(c); // every pushkey was unregistered or rejected meanwhile
        cancelled++;
        continue;
      }
      sends.push(
        this.gateway
          .notify(
            {
              messageId: c.messageId,
              conversationId: c.message!.conversationId,
              from: c.message!.from,
              unread: target.unread,
              devices: target.devices,
              ...(this.config.includeContent ? { content: pushBody(c.message!) } : {}),
            },
            this.abort.signal,
          )
          .then((answer) => {
            if (answer.ok) {
              done.push(c);
              const sentKeys = new Set(target.devices.map((d) => d.pushkey));
              for (const pushkey of answer.rejected) {
                if (sentKeys.has(pushkey)) rejected.push({ userId: c.recipient, pushkey });
              }
              return;
            }
            if (this.abort.signal.aborted) {
              retry.push({ ...c, dueAt: this.clock.now() }); // shutting down: not the gateway's fault
              return;
            }
            const at = this.clock.now().getTime() + this.backoffMs(c.attempts);
            if (at > this.deadline(c)) gaveUp.push(c);
            else retry.push({ ...c, dueAt: new Date(at) });
            this.warn({ reason: answer.reason, messageId: c.messageId, attempts: c.attempts }, "push gateway failed; will retry");
          }),
      );
    }
    await Promise.all(sends);

    await this.store.complete([...done, ...drop, ...gaveUp]);
    if (retry.length > 0) await this.store.reschedule(retry);
    const removed = rejected.length > 0 ? await this.store.removePushkeys(rejected) : 0;
    this.metrics.sent(done.length);
    this.metrics.retried(retry.length);
    this.metrics.failed(gaveUp.length);
    this.metrics.rejected(removed);
    this.metrics.cancelled(cancelled);
    if (removed > 0) this.log.info({ removed }, "pushkeys rejected by the gateway removed");
    if (gaveUp.length > 0) {
      this.log.warn(
        {
          count: gaveUp.length,
          retryForMs: this.config.retryForMs,
          pushes: gaveUp.slice(0, 20).map((c) => ({ messageId: c.messageId, recipient: c.recipient, attempts: c.attempts })),
        },
        "push given up: the gateway did not take it within PUSH_RETRY_FOR_MS",
      );
    }
    return claimed.length;
  }

  private deadline(c: ClaimedPush): number {
    return c.firstDueAt.getTime() + this.config.retryForMs;
  }

  /** Exponential, from PUSH_RETRY_MIN_MS, ±25 % jitter so a recovering gateway is not hit by every node at once. */
  private backoffMs(attempts: number): number {
    const base = Math.min(MAX_BACKOFF_MS, this.config.retryMinMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }
}

/** A media message's push names what it carries ("Photo", "Voice message", "Document"), then its caption. */
function pushBody(message: { content: string; mediaMime: string | null }): string {
  if (message.mediaMime === null) return message.content;
  const label = mediaLabel(message.mediaMime);
  return message.content === "" ? label : `${label}: ${message.content}`;
}
