import { readdir } from "node:fs/promises";
import client from "prom-client";

/**
 * prom-client defaults that list every handle, resource or open file of the process, on
 * the event loop, at each scrape: with 19,000 sockets one scrape held the loop for tens of
 * milliseconds (docs/benchmarks.md, "C100k: where the ack latency goes"), and that grows
 * with the sockets. Sockets are counted by ticks_connected_sockets; process_open_fds is
 * kept, read off the loop (Metrics.openFds).
 */
const PER_HANDLE_DEFAULTS = [
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "process_open_fds",
] as const;

/**
 * Prometheus metrics, one registry per server instance (tests run several in one process).
 */
export class Metrics {
  readonly registry = new client.Registry();
  readonly messagesStored = new client.Counter({
    name: "ticks_messages_stored_total",
    help: "Messages committed to the database",
    registers: [this.registry],
  });
  readonly messagesDelivered = new client.Counter({
    name: "ticks_messages_delivered_total",
    help: "Delivery receipts stored (live or backlog)",
    registers: [this.registry],
  });
  readonly messagesRead = new client.Counter({
    name: "ticks_messages_read_total",
    help: "Read receipts stored",
    registers: [this.registry],
  });
  readonly backlogPages = new client.Counter({
    name: "ticks_backlog_pages_total",
    help: "Backlog pages acknowledged by devices",
    registers: [this.registry],
  });
  readonly expired = new client.Counter({
    name: "ticks_messages_expired_total",
    help: "Expired messages deleted by the sweep",
    registers: [this.registry],
  });
  readonly handlerSeconds = new client.Histogram({
    name: "ticks_handler_duration_seconds",
    help: "Time from receiving a client event to its acknowledgement",
    labelNames: ["event", "outcome"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly writeBatchSize = new client.Histogram({
    name: "ticks_write_batch_size",
    help: "Requests sharing one database round trip (group commit)",
    labelNames: ["kind"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly redelivery = new client.Counter({
    name: "ticks_redelivery_total",
    help:
      "Messages looked at by redelivery rounds, by reason (periodic, node_death) and outcome: offered again; " +
      "skipped (an offer from this node was still waiting: a duplicate avoided); redundant (confirmed although already delivered: a duplicate received)",
    labelNames: ["reason", "outcome"] as const,
    registers: [this.registry],
  });
  readonly slowConsumerDisconnects = new client.Counter({
    name: "ticks_slow_consumer_disconnects_total",
    help: "Sockets disconnected because their queued outgoing data went over MAX_SOCKET_BUFFER_BYTES",
    registers: [this.registry],
  });
  readonly liveOrderGaps = new client.Counter({
    name: "ticks_live_order_gaps_given_up_total",
    help: "Gaps in a socket's live seq order given up (hold over, or too many waiting): with every node and Redis up, expected 0",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly connectedSockets = new client.Gauge({
    name: "ticks_connected_sockets",
    help: "Sockets connected to this node",
    registers: [this.registry],
  });

  readonly pushSent = new client.Counter({
    name: "ticks_push_sent_total",
    help: "Push notifications the gateway accepted (2xx)",
    registers: [this.registry],
  });
  readonly pushRetried = new client.Counter({
    name: "ticks_push_retried_total",
    help: "Push attempts that failed (non-2xx, timeout, refused, garbage) and were scheduled again",
    registers: [this.registry],
  });
  readonly pushFailed = new client.Counter({
    name: "ticks_push_failed_total",
    help: "Push notifications given up after PUSH_RETRY_FOR_MS",
    registers: [this.registry],
  });
  readonly pushCancelled = new client.Counter({
    name: "ticks_push_cancelled_total",
    help: "Due pushes dropped unsent by the worker: confirmed, deleted, expired or gone, or no pushkey left",
    registers: [this.registry],
  });
  readonly pushkeysRejected = new client.Counter({
    name: "ticks_pushkeys_rejected_total",
    help: "Pushkeys removed because the gateway listed them in `rejected`",
    registers: [this.registry],
  });
  readonly pushOutboxDepth = new client.Gauge({
    name: "ticks_push_outbox_depth",
    help: "Pushes waiting in the outbox (cluster-wide: read from the database at scrape time)",
    registers: [this.registry],
    collect: () => this.refreshOutbox(),
  });
  readonly pushOutboxOldestSeconds = new client.Gauge({
    name: "ticks_push_outbox_oldest_due_seconds",
    help: "How long the oldest pending push has been due (0 when none is overdue)",
    registers: [this.registry],
    collect: () => this.refreshOutbox(),
  });

  private outbox: { stats: () => Promise<{ depth: number; oldestFirstDueAt: Date | null }>; now: () => Date } | null =
    null;
  private outboxRead: Promise<void> | null = null;

  /** Where the outbox gauges read from (only when pushes are on). */
  watchPushOutbox(stats: () => Promise<{ depth: number; oldestFirstDueAt: Date | null }>, now: () => Date): void {
    this.outbox = { stats, now };
  }

  /** One query per scrape serves both gauges; a failed one leaves the last values. */
  private refreshOutbox(): Promise<void> {
    const outbox = this.outbox;
    if (!outbox) return Promise.resolve();
    this.outboxRead ??= outbox
      .stats()
      .then(({ depth, oldestFirstDueAt }) => {
        this.pushOutboxDepth.set(depth);
        const ageMs = oldestFirstDueAt ? outbox.now().getTime() - oldestFirstDueAt.getTime() : 0;
        this.pushOutboxOldestSeconds.set(Math.max(0, ageMs) / 1000);
      })
      .catch(() => {})
      .finally(() => setImmediate(() => (this.outboxRead = null)));
    return this.outboxRead;
  }

  /** Set by the app: how many sockets' token deadlines it watches. */
  countTokenDeadlines: () => number = () => 0;
  readonly tokenDeadlines: client.Gauge = new client.Gauge({
    name: "ticks_token_deadlines",
    help: "Sockets whose token exp this node watches (all on one shared timer)",
    registers: [this.registry],
    collect: (): void => this.tokenDeadlines.set(this.countTokenDeadlines()),
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry });
    for (const name of PER_HANDLE_DEFAULTS) this.registry.removeSingleMetric(name);
    this.openFds();
  }

  /**
   * process_open_fds as prom-client has it (Linux only), but the listing of /proc/self/fd
   * runs in libuv's thread pool instead of on the loop: near the open-file limit is when
   * it matters, and when a synchronous listing costs most.
   */
  private openFds(): void {
    if (process.platform !== "linux") return;
    const gauge: client.Gauge = new client.Gauge({
      name: "process_open_fds",
      help: "Number of open file descriptors.",
      registers: [this.registry],
      collect: async (): Promise<void> => {
        try {
          // Minus the descriptor the listing itself held open.
          gauge.set((await readdir("/proc/self/fd")).length - 1);
        } catch {
          // no /proc: the gauge keeps its last value
        }
      },
    });
  }
}
