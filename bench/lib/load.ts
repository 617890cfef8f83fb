/**
 * The load generator: N sender→recipient pairs, each user on its own WebSocket, all in
 * this one process so one clock times send, acknowledgement, delivery and receipt.
 *
 * Two modes:
 * - "max": closed loop, `inFlight` sends outstanding per sender; a send goes out as soon as
 *   an acknowledgement frees a slot. Measures the most the target acknowledges per second.
 *   Latencies are from the actual send time (so they are latency *at saturation*).
 * - "paced": open loop on a schedule, `rate` msg/s in all, spread evenly over the senders
 *   (each with a random phase). At most `inFlight` are outstanding per sender; a send held
 *   back by that cap goes out late, but every latency is measured from its SCHEDULED time,
 *   so a stalled server cannot hide its stall by slowing the generator down (no
 *   coordinated omission).
 *
 * Statistics cover the sends scheduled inside a window (after a warm-up); throughput counts
 * the acknowledgements, deliveries and receipts that arrived inside it.
 */
import type { Message, StatusUpdate } from "../../src/protocol/events";
import { clientSocket, connectSocket, type ClientSocket } from "../../test/helpers/socket";
import { sleep, STALL_MS, stallsOf, summarize, type Stall, type Summary } from "./stats";
export type AuthFor = (userId: string) => Record<string, unknown> | Promise<Record<string, unknown>>;
export type Mode = { kind: "max" } | { kind: "paced"; rate: number };

/** Dev-mode handshake (AUTH_MODE=dev, and the relay). */
export const devAuth: AuthFor = (userId) => ({ userId, deviceId: "bench" });

type Rec = {
  scheduled: number;
  sent: number;
  acked: number;
  delivered: number;
  status: number;
  failed: boolean;
  error?: string;
};

type Pair = {
  index: number;
  senderId: string;
  recipientId: string;
  sender: ClientSocket;
  recipient: ClientSocket;
  seq: number;
  inflight: number;
  next: number;
};

/** A measured interval; `unsent`: paced sends due in it that never went out (set by stop()). */
export type Window = { start: number; end: number | null; cpu0: NodeJS.CpuUsage; cpuMs: number; unsent: number };

export type LoadStats = {
  mode: string;
  windowS: number;
  /** Sends scheduled (paced) or made (max) inside the windows. */
  sends: number;
  ackedPerSec: number;
  deliveredPerSec: number;
  /** Whole lifecycles: acknowledged, delivered live, and the sender told "delivered". */
  lifecyclesPerSec: number;
  ackMs: Summary;
  deliveryMs: Summary;
  statusMs: Summary;
  /** Of the window's sends, how many never got that far before the drain deadline. */
  incomplete: { ack: number; delivery: number; status: number };
  errors: number;
  errorCodes: Record<string, number>;
  duplicateDeliveries: number;
  disconnects: number;
  /** The generator's own CPU use in the window, % of one core. */
  loadgenCpuPct: number;
  /** Over the generator's whole life (warm-ups too): successful acks, deliveries, receipts. */
  totals: { ackedOk: number; delivered: number; statusDelivered: number };
  /** When acks were slow (≥ STALL_MS): runs of such sends, by wall-clock time, worst first. */
  stalls: Stall[];
};


export type LoadOptions = {
  url: string;
  /** Where the recipients connect, when not to `url` (two nodes: everything crosses Redis). */
  recipientUrl?: string;
  pairs: number;
  /** Distinguishes this run's users and clientMsgIds from any other. */
  tag: string;
  auth: AuthFor;
  contentSize: number;
  connectTimeoutMs?: number;
};

const now = () => performance.now();

/** Opens one socket and resolves at its `sync:complete` (backlog drained). */
export function openSocket(
  url: string,
  auth: Record<string, unknown>,
  timeoutMs = 30_000,
  setup: (socket: ClientSocket) => void = () => {},
): Promise<ClientSocket> {
  const socket = clientSocket(url, auth);
  // A backlog (none is expected here) is acknowledged page by page so sync can finish.
  socket.on("message:backlog", (_page, ack) => ack());
  setup(socket);
  return connectSocket(socket, { until: "sync:complete", timeoutMs });
}

export class LoadGen {
  private readonly records = new Map<string, Rec>();
  private readonly byId = new Map<string, Rec>();
  /** A receipt can overtake the sender's acknowledgement: kept until the ack names the id. */
  private readonly earlyStatus = new Map<string, number>();
  private readonly content: string;
  private mode: Mode = { kind: "max" };
  private inFlight = 8;
  private running = false;
  private stopAt = Infinity;
  private interval = 0;
  private ticker: NodeJS.Timeout | null = null;
  private duplicateDeliveries = 0;
  private disconnects = 0;
  private closing = false;

  private constructor(
    private readonly pairs: Pair[],
    private readonly options: LoadOptions,
  ) {
    this.content = "x".repeat(options.contentSize);
    for (const pair of pairs) this.wire(pair);
  }

  static async connect(options: LoadOptions): Promise<LoadGen> {
    const pairs: Pair[] = [];
    const timeout = options.connectTimeoutMs ?? 30_000;
    // A few handshakes at a time: a connection storm is not what is measured here.
    const chunk = 20;
    for (let i = 0; i < options.pairs; i += chunk) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(chunk, options.pairs - i) }, async (_, j) => {
          const index = i + j;
          const senderId = `s${index}-${options.tag}`;
          const recipientId = `r${index}-${options.tag}`;
          const [sender, recipient] = await Promise.all([
            openSocket(options.url, await options.auth(senderId), timeout),
            openSocket(options.recipientUrl ?? options.url, await options.auth(recipientId), timeout),
          ]);
          return { index, senderId, recipientId, sender, recipient, seq: 0, inflight: 0, next: 0 };
        }),
      );
      pairs.push(...batch);
    }
    return new LoadGen(pairs, options);
  }

  private wire(pair: Pair): void {
    pair.recipient.on("message:new", (message: Message, ack) => {
      const t = now();
      const rec = this.records.get(message.clientMsgId);
      if (rec && rec.delivered === 0) rec.delivered = t;
      else this.duplicateDeliveries++;
      ack?.();
    });
    pair.sender.on("message:status", (update: StatusUpdate) => {
      if (update.status !== "delivered") return;
      const t = now();
      for (const id of update.messageIds) {
        const rec = this.byId.get(id);
        if (rec) {
          if (rec.status === 0) rec.status = t;
        } else if (!this.earlyStatus.has(id)) {
          this.earlyStatus.set(id, t);
        }
      }
    });
    for (const socket of [pair.sender, pair.recipient]) {
      socket.on("disconnect", () => {
        if (!this.closing) this.disconnects++;
      });
    }
  }

  private send(pair: Pair, scheduled: number): void {
    const clientMsgId = `${this.options.tag}:${pair.index}:${pair.seq++}`;
    const rec: Rec = { scheduled, sent: now(), acked: 0, delivered: 0, status: 0, failed: false };
    this.records.set(clientMsgId, rec);
    pair.inflight++;
    pair.sender.emit("message:send", { clientMsgId, to: pair.recipientId, content: this.content }, (reply) => {
      rec.acked = now();
      pair.inflight--;
      if (reply.ok) {
        const id = reply.message.id;
        this.byId.set(id, rec);
        const early = this.earlyStatus.get(id);
        if (early !== undefined) {
          rec.status = early;
          this.earlyStatus.delete(id);
        }
      } else {
        rec.failed = true;
        rec.error = reply.error.code;
      }
      this.pump(pair);
    });
  }

  /** Sends what the mode allows for this pair right now. */
  private pump(pair: Pair): void {
    if (!this.running) return;
    if (this.mode.kind === "max") {
      if (now() >= this.stopAt) return;
      while (pair.inflight < this.inFlight) this.send(pair, now());
      return;
    }
    const t = now();
    while (pair.next <= t && pair.next < this.stopAt && pair.inflight < this.inFlight) {
      this.send(pair, pair.next);
      pair.next += this.interval;
    }
  }

  start(mode: Mode, inFlight: number): void {
    if (this.running) throw new Error("already running");
    this.mode = mode;
    this.inFlight = inFlight;
    this.running = true;
    this.stopAt = Infinity;
    const t0 = now();
    if (mode.kind === "paced") {
      // Per sender: one send every `interval` ms, each sender at its own random phase.
      this.interval = (this.pairs.length * 1000) / mode.rate;
      for (const pair of this.pairs) pair.next = t0 + Math.random() * this.interval;
      this.ticker = setInterval(() => {
        for (const pair of this.pairs) this.pump(pair);
      }, 1);
    } else {
      for (const pair of this.pairs) this.pump(pair);
    }
  }

  window(): Window {
    return { start: now(), end: null, cpu0: process.cpuUsage(), cpuMs: 0, unsent: 0 };
  }

  endWindow(w: Window): void {
    w.end = now();
    const cpu = process.cpuUsage(w.cpu0);
    w.cpuMs = (cpu.user + cpu.system) / 1000;
  }

  /**
   * No new sends are scheduled from now on; what was already due still goes out (paced),
   * then waits until every send made so far is acknowledged, delivered and receipted, or
   * `drainMs` passes.
   */
  async stop(drainMs: number, w?: Window): Promise<void> {
    this.stopAt = now();
    const deadline = this.stopAt + drainMs;
    const unfinished = (rec: Rec) => rec.acked === 0 || (!rec.failed && (rec.delivered === 0 || rec.status === 0));
    let pending: Rec[] | null = null;
    const outstanding = () => {
      if (this.mode.kind === "paced" && this.pairs.some((p) => p.next < this.stopAt)) return true;
      // Scanned once in full, then only what was still open.
      pending = (pending ?? [...this.records.values()]).filter(unfinished);
      return pending.length > 0;
    };
    while (now() < deadline && outstanding()) await sleep(50);
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    this.running = false;
    // Paced sends that were due in the window but never went out (the in-flight cap held
    // them back past the drain deadline) are the worst latencies of all: incomplete.
    if (w && w.end !== null && this.mode.kind === "paced") {
      for (const pair of this.pairs) {
        if (pair.next >= w.end) continue;
        const missing = Math.ceil((w.end - Math.max(pair.next, w.start)) / this.interval);
        if (missing > 0) w.unsent += missing;
      }
    }
  }

  /** Statistics over one or more windows (of this generator), as if they were one. */
  stats(windows: Window[]): LoadStats {
    const spans = windows.map((w) => [w.start, w.end ?? now()] as const);
    const windowMs = spans.reduce((sum, [a, b]) => sum + (b - a), 0);
    const inWindow = (t: number) => {
      for (const [a, b] of spans) if (t >= a && t < b) return true;
      return false;
    };
    const ack: number[] = [];
    const delivery: number[] = [];
    const status: number[] = [];
    const slow: [number, number][] = [];
    let sends = 0;
    let acked = 0;
    let delivered = 0;
    let lifecycles = 0;
    const incomplete = { ack: 0, delivery: 0, status: 0 };
    const totals = { ackedOk: 0, delivered: 0, statusDelivered: 0 };
    let errors = 0;
    const errorCodes: Record<string, number> = {};
    for (const rec of this.records.values()) {
      if (rec.acked && !rec.failed) totals.ackedOk++;
      if (rec.delivered) totals.delivered++;
      if (rec.status) totals.statusDelivered++;
      if (inWindow(rec.acked) && !rec.failed) acked++;
      if (inWindow(rec.delivered)) delivered++;
      if (inWindow(rec.status)) lifecycles++;
      if (!inWindow(rec.scheduled)) continue;
      sends++;
      if (rec.acked) {
        ack.push(rec.acked - rec.scheduled);
        if (rec.acked - rec.scheduled >= STALL_MS) slow.push([rec.scheduled, rec.acked - rec.scheduled]);
      } else incomplete.ack++;
      if (rec.failed) {
        errors++;
        errorCodes[rec.error!] = (errorCodes[rec.error!] ?? 0) + 1;
        continue;
      }
      if (rec.delivered) delivery.push(rec.delivered - rec.scheduled);
      else incomplete.delivery++;
      if (rec.status) status.push(rec.status - rec.scheduled);
      else incomplete.status++;
    }
    const unsent = windows.reduce((sum, w) => sum + w.unsent, 0);
    sends += unsent;
    incomplete.ack += unsent;
    incomplete.delivery += unsent;
    incomplete.status += unsent;
    const perSec = (n: number) => (n * 1000) / windowMs;
    const cpuMs = windows.reduce((sum, w) => sum + w.cpuMs, 0);
    return {
      mode: this.mode.kind === "max" ? `max, ${this.inFlight} in flight/sender` : `paced ${this.mode.rate} msg/s`,
      windowS: windowMs / 1000,
      sends,
      ackedPerSec: perSec(acked),
      deliveredPerSec: perSec(delivered),
      lifecyclesPerSec: perSec(lifecycles),
      ackMs: summarize(ack),
      deliveryMs: summarize(delivery),
      statusMs: summarize(status),
      incomplete,
      errors,
      errorCodes,
      duplicateDeliveries: this.duplicateDeliveries,
      disconnects: this.disconnects,
      loadgenCpuPct: (cpuMs / windowMs) * 100,
      totals,
      stalls: stallsOf(slow),
    };
  }

  close(): void {
    this.closing = true;
    if (this.ticker) clearInterval(this.ticker);
    for (const pair of this.pairs) {
      pair.sender.disconnect();
      pair.recipient.disconnect();
    }
  }
}
