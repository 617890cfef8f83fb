/**
 * Building blocks of the fault suite (test/faults): clients that fail over between nodes the
 * way a real app would, a flood of sends with per-message bookkeeping, and the final
 * accounting against the database.
 */
import { io } from "socket.io-client";
import type { Client } from "pg";
import type { ClientSocket } from "../../src/client/TicksClient";
import type { Message, Reply, SendRequest, SendResult } from "../../src/protocol";
import { uniqueId } from "./device";
import type { NodeProcess } from "./processes";

export type SendReply = Reply<SendResult>;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type FailoverOptions = {
  /** socket.io-client `retries`. @default 10 */
  retries?: number;
  /** socket.io-client `ackTimeout` (ms). @default 2000 */
  ackTimeout?: number;
  /** Pause before opening a socket to the next node. @default 100-300 ms, jittered */
  failoverDelayMs?: () => number;
};

/**
 * One device of one user with a list of node URLs. It never reconnects to the same URL by
 * itself (a socket.io-client Manager could only do that): on a disconnect or a refused
 * connection it opens a fresh socket to the next node in the list.
 */
abstract class FailoverSocket {
  socket: ClientSocket | null = null;
  /** Bumped for every new socket; callbacks of older sockets are ignored. */
  protected generation = 0;
  private index: number;
  protected closed = false;
  failovers = 0;
  connects = 0;
  readonly urlsUsed: string[] = [];
  private readonly connectedWaiters: (() => void)[] = [];

  constructor(
    readonly urls: string[],
    readonly userId: string,
    startIndex: number,
    protected readonly options: FailoverOptions = {},
  ) {
    this.index = startIndex % urls.length;
  }

  get url(): string {
    return this.urls[this.index % this.urls.length]!;
  }

  get connected(): boolean {
    return this.socket?.connected ?? false;
  }

  /** Opens the first socket and waits until it is connected (to whichever node answered). */
  start(): Promise<void> {
    const connected = this.waitConnected();
    this.open();
    return connected;
  }

  waitConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  protected abstract attach(socket: ClientSocket, generation: number): void;
  /** A new socket exists (not yet connected): re-issue whatever was in flight on the old one. */
  protected onNewSocket(): void {}

  private open(): void {
    const generation = ++this.generation;
    const url = this.url;
    this.urlsUsed.push(url);
    const socket: ClientSocket = io(url, {
      auth: { userId: this.userId },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      autoConnect: false,
      retries: this.options.retries ?? 10,
      ackTimeout: this.options.ackTimeout ?? 2000,
      timeout: 5000,
    });
    this.socket = socket;
    this.attach(socket, generation);
    socket.on("connect", () => {
      if (generation !== this.generation) return;
      this.connects++;
      this.connectedWaiters.splice(0).forEach((w) => w());
    });
    const failover = () => {
      if (generation !== this.generation || this.closed) return;
      this.generation++; // stale from now on, whatever it still emits
      this.failovers++;
      this.index++;
      socket.removeAllListeners();
      socket.disconnect();
      const delay = this.options.failoverDelayMs?.() ?? 100 + Math.random() * 200;
      setTimeout(() => {
        if (this.closed) return;
        this.open();
        this.onNewSocket();
      }, delay);
    };
    socket.on("connect_error", failover);
    socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") failover();
    });
    socket.connect();
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.socket?.removeAllListeners();
    this.socket?.disconnect();
  }
}

/** A sender: one message in flight at a time (socket.io-client's retry queue works that way). */
export class FailoverSender extends FailoverSocket {
  private inflight: (() => void) | null = null;
  private abort: (() => void) | null = null;
  /** Emits of message:send, first tries and re-issues after a failover or exhausted retries. */
  emits = 0;
  /** Times socket.io-client gave up on a packet after `retries` (each then re-issued). */
  exhausted = 0;

  protected attach(): void {}

  protected override onNewSocket(): void {
    this.inflight?.();
  }

  /** Resolves with the server's reply, across failovers; null if the sender was closed first. */
  send(payload: SendRequest): Promise<SendReply | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const attempt = () => {
        const generation = this.generation;
        const socket = this.socket!;
        this.emits++;
        const emit = socket.emit.bind(socket) as unknown as (
          ev: string,
          p: SendRequest,
          cb: (err: Error | null, reply: SendReply) => void,
        ) => void;
        emit("message:send", payload, (err, reply) => {
          if (generation !== this.generation || this.closed) return; // re-issued on a newer socket
          if (err) {
            this.exhausted++;
            attempt();
            return;
          }
          this.inflight = null;
          this.abort = null;
          resolve(reply);
        });
      };
      this.inflight = attempt;
      this.abort = () => resolve(null);
      attempt();
    });
  }

  override close(): void {
    super.close();
    this.inflight = null;
    this.abort?.();
    this.abort = null;
  }
}

/** A recipient device: records and acknowledges every live message and every backlog page. */
export class FailoverRecipient extends FailoverSocket {
  /** Every message as received, before de-duplication. */
  raw = 0;
  liveRaw = 0;
  backlogRaw = 0;
  backlogPages = 0;
  syncs = 0;
  readonly received = new Map<string, Message>();
  /** When each message first arrived (ms since epoch). */
  readonly arrivedAt = new Map<string, number>();
  /** Messages whose `to` was someone else. */
  readonly misaddressed: Message[] = [];
  /** First arrivals with a lower seq than one already received in that conversation. */
  seqInversions = 0;
  private readonly maxSeq = new Map<string, number>();

  protected attach(socket: ClientSocket, generation: number): void {
    const record = (m: Message) => {
      this.raw++;
      if (m.to !== this.userId) this.misaddressed.push(m);
      if (this.received.has(m.id)) return;
      this.received.set(m.id, m);
      this.arrivedAt.set(m.id, Date.now());
      const max = this.maxSeq.get(m.conversationId) ?? 0;
      if (m.seq < max) this.seqInversions++;
      else this.maxSeq.set(m.conversationId, m.seq);
    };
    socket.on("message:new", (m, ack) => {
      this.liveRaw++;
      record(m);
      ack();
    });
    socket.on("message:backlog", (page, ack) => {
      this.backlogPages++;
      this.backlogRaw += page.messages.length;
      page.messages.forEach(record);
      ack();
    });
    socket.on("sync:complete", () => {
      if (generation === this.generation) this.syncs++;
    });
  }

  /** Connects and waits for the first `sync:complete`. */
  async startSynced(timeoutMs = 20_000): Promise<void> {
    await this.start();
    const deadline = Date.now() + timeoutMs;
    while (this.syncs === 0) {
      if (Date.now() > deadline) throw new Error(`${this.userId}: no sync:complete`);
      await sleep(20);
    }
  }
}

export type Intent = {
  sender: number;
  from: string;
  clientMsgId: string;
  to: string;
  content: string;
  /** Message ids of every ok reply (more than one would be two stored messages). */
  okIds: Set<string>;
  okReplies: number;
  /** When the first ok arrived (ms since epoch). */
  ackedAt?: number;
  duplicateReplies: number;
  unavailable: number;
  rateLimited: number;
  /** Error codes other than UNAVAILABLE / RATE_LIMITED: the message is given up. */
  errors: string[];
  done: boolean;
};

export type FloodStats = {
  intents: Intent[];
  acked: number;
  unavailable: number;
  rateLimited: number;
  duplicateReplies: number;
  otherErrors: number;
  startedAt: number;
  finishedAt: number | null;
};

/** A message still to send: nothing answered yet. */
export function newIntent(message: Pick<Intent, "sender" | "from" | "clientMsgId" | "to" | "content">): Intent {
  return {
    ...message,
    okIds: new Set(),
    okReplies: 0,
    duplicateReplies: 0,
    unavailable: 0,
    rateLimited: 0,
    errors: [],
    done: false,
  };
}

/** Counters at zero for `intents`; `finishedAt` stays null until the flood is over. */
export function newFloodStats(intents: Intent[], startedAt = Date.now()): FloodStats {
  return {
    intents,
    acked: 0,
    unavailable: 0,
    rateLimited: 0,
    duplicateReplies: 0,
    otherErrors: 0,
    startedAt,
    finishedAt: null,
  };
}

/**
 * The population of a flood: `recipients` devices and `senders`, spread over the nodes at
 * `urls`. All are added to `closeAtEnd` before any connects, so a failed start still leaves
 * nothing open. Resolves once every recipient had its first sync:complete (nothing it gets
 * later is backlog from before the flood) and every sender is connected.
 */
export async function startFloodClients(
  urls: string[],
  counts: { senders: number; recipients: number },
  closeAtEnd: { close(): void }[],
): Promise<{ senders: FailoverSender[]; recipients: FailoverRecipient[] }> {
  const recipients = spread(counts.recipients, (i, start) => new FailoverRecipient(urls, uniqueId(`r${i}`), start), urls.length);
  const senders = spread(
    counts.senders,
    (i, start) => new FailoverSender(urls, uniqueId(`s${i}`), start, { retries: 10, ackTimeout: 2000 }),
    urls.length,
  );
  closeAtEnd.push(...recipients, ...senders);
  await Promise.all(recipients.map((r) => r.startSynced()));
  await Promise.all(senders.map((s) => s.start()));
  return { senders, recipients };
}

/** Every sender sends `perSender` messages, round-robin over the recipients. */
export function planFlood(senders: FailoverSender[], recipients: string[], perSender: number, tag: string): Intent[] {
  const intents: Intent[] = [];
  senders.forEach((s, i) => {
    for (let k = 0; k < perSender; k++) {
      intents.push(
        newIntent({
          sender: i,
          from: s.userId,
          clientMsgId: `${tag}-${i}-${k}`,
          to: recipients[(i * 7 + k) % recipients.length]!,
          content: `${tag} #${k} from ${s.userId}`,
        }),
      );
    }
  });
  return intents;
}

/**
 * Runs every sender through its messages, one at a time: an UNAVAILABLE (or RATE_LIMITED)
 * answer is retried with the same clientMsgId after `retryDelayMs`. Resolves when every
 * sender is done or `deadlineMs` passed (then the senders are left as they are).
 */
export function startFlood(
  senders: FailoverSender[],
  intents: Intent[],
  options: { retryDelayMs?: number } = {},
): { stats: FloodStats; done: Promise<void> } {
  const stats = newFloodStats(intents);
  const retryDelayMs = options.retryDelayMs ?? 200;
  const runSender = async (index: number) => {
    const sender = senders[index]!;
    for (const intent of intents) {
      if (intent.sender !== index) continue;
      while (!intent.done) {
        const reply = await sender.send({ clientMsgId: intent.clientMsgId, to: intent.to, content: intent.content });
        if (reply === null) return; // closed
        if (reply.ok) {
          if (intent.okReplies === 0) {
            stats.acked++;
            intent.ackedAt = Date.now();
          }
          intent.okReplies++;
          intent.okIds.add(reply.message.id);
          if (reply.duplicate) {
            intent.duplicateReplies++;
            stats.duplicateReplies++;
          }
          intent.done = true;
        } else if (reply.error.code === "UNAVAILABLE" || reply.error.code === "RATE_LIMITED") {
          if (reply.error.code === "UNAVAILABLE") {
            intent.unavailable++;
            stats.unavailable++;
          } else {
            intent.rateLimited++;
            stats.rateLimited++;
          }
          await sleep(retryDelayMs * (0.5 + Math.random()));
        } else {
          intent.errors.push(reply.error.code);
          stats.otherErrors++;
          intent.done = true;
        }
      }
    }
  };
  const done = Promise.all(senders.map((_, i) => runSender(i))).then(() => {
    stats.finishedAt = Date.now();
  });
  return { stats, done };
}

export async function waitUntil(condition: () => boolean, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
  return true;
}

export type Figures = {
  sent: number;
  acknowledged: number;
  storedRows: number;
  delivered: number;
  expectedDeliveries: number;
  rawReceived: number;
  rawDuplicates: number;
  duplicateRows: number;
  lost: number;
  ackedLost: number;
  notStored: number;
  undelivered: number;
  misaddressed: number;
  okIdMismatch: number;
  strayRows: number;
  sentLeft: number;
  seqGaps: number;
  seqInversions: number;
  duplicateReplies: number;
  unavailable: number;
  otherErrors: number;
};

/**
 * Compares what the clients intended, were told and received with what the database holds.
 * The database is private to the test, so every row in it came from this flood.
 */
export async function collectFigures(pg: Client, stats: FloodStats, recipients: FailoverRecipient[]): Promise<Figures> {
  const { rows } = await pg.query<{ message_id: string; from_user_id: string; client_msg_id: string; to_user_id: string | null }>(
    "SELECT message_id, from_user_id, client_msg_id, to_user_id FROM messages",
  );
  const byKey = new Map<string, string[]>();
  const ids = new Set<string>();
  for (const r of rows) {
    const key = `${r.from_user_id} ${r.client_msg_id}`;
    byKey.set(key, [...(byKey.get(key) ?? []), r.message_id]);
    ids.add(r.message_id);
  }
  let duplicateRows = 0;
  for (const list of byKey.values()) duplicateRows += list.length - 1;
  const intended = new Set(stats.intents.map((i) => `${i.from} ${i.clientMsgId}`));
  const strayRows = [...byKey.keys()].filter((k) => !intended.has(k)).length;
  let ackedLost = 0;
  let notStored = 0;
  let okIdMismatch = 0;
  for (const intent of stats.intents) {
    if ([...intent.okIds].some((id) => !ids.has(id))) ackedLost++;
    if (intent.okIds.size > 1) okIdMismatch++;
    if (!byKey.has(`${intent.from} ${intent.clientMsgId}`)) notStored++;
  }
  const expected = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!r.to_user_id) continue;
    const set = expected.get(r.to_user_id) ?? new Set<string>();
    set.add(r.message_id);
    expected.set(r.to_user_id, set);
  }
  let delivered = 0;
  let expectedDeliveries = 0;
  let undelivered = 0;
  let misaddressed = 0;
  let rawReceived = 0;
  let uniqueReceived = 0;
  let seqInversions = 0;
  for (const rcpt of recipients) {
    seqInversions += rcpt.seqInversions;
    const want = expected.get(rcpt.userId) ?? new Set<string>();
    expectedDeliveries += want.size;
    for (const id of want) {
      if (rcpt.received.has(id)) delivered++;
      else undelivered++;
    }
    for (const id of rcpt.received.keys()) if (!want.has(id)) misaddressed++;
    misaddressed += rcpt.misaddressed.length;
    rawReceived += rcpt.raw;
    uniqueReceived += rcpt.received.size;
  }
  const sentLeft = Number(
    (await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE status = 'sent'")).rows[0].n,
  );
  // Guarantee 4: per conversation, seq is exactly 1..n and the counter says n.
  const seqGaps = Number(
    (
      await pg.query(`
        SELECT count(*)::int AS n FROM conversations c
        LEFT JOIN (SELECT conversation_id, count(*) AS k, min(seq) AS lo, max(seq) AS hi FROM messages GROUP BY 1) m
          ON m.conversation_id = c.conversation_id
        WHERE COALESCE(m.k, 0) <> c.last_seq OR (m.k > 0 AND (m.lo <> 1 OR m.hi <> m.k))`)
    ).rows[0].n,
  );
  return {
    sent: stats.intents.length,
    acknowledged: stats.intents.filter((i) => i.okReplies > 0).length,
    storedRows: rows.length,
    delivered,
    expectedDeliveries,
    rawReceived,
    rawDuplicates: rawReceived - uniqueReceived,
    duplicateRows,
    lost: ackedLost + notStored + undelivered,
    ackedLost,
    notStored,
    undelivered,
    misaddressed,
    okIdMismatch,
    strayRows,
    sentLeft,
    seqGaps,
    seqInversions,
    duplicateReplies: stats.duplicateReplies,
    unavailable: stats.unavailable,
    otherErrors: stats.otherErrors,
  };
}

/**
 * How long the last messages took to be delivered, from the last acknowledged send: to the
 * last first arrival at a recipient device, and to the last delivery receipt stored
 * (`delivered_at`: what the sender's ticks wait for; a message a device got whose receipt
 * died with a node counts only once it is stored again). Negative when all was in before
 * the last ack. Call it once settled.
 */
export async function lastAckToLastDelivery(pg: Client, stats: FloodStats, recipients: FailoverRecipient[]) {
  const lastAckAt = Math.max(...stats.intents.map((i) => i.ackedAt ?? 0));
  let lastArrivalAt = 0;
  for (const r of recipients) for (const at of r.arrivedAt.values()) lastArrivalAt = Math.max(lastArrivalAt, at);
  const { rows } = await pg.query<{ at: Date | null }>("SELECT max(delivered_at) AS at FROM message_delivery");
  const lastReceiptAt = rows[0]?.at?.getTime() ?? 0;
  return {
    arrivalMs: lastArrivalAt - lastAckAt,
    receiptMs: lastReceiptAt - lastAckAt,
    ms: Math.max(lastArrivalAt, lastReceiptAt) - lastAckAt,
    lastDeliveryAt: Math.max(lastArrivalAt, lastReceiptAt),
  };
}

/** Polls until every recipient has everything addressed to it and no row is left 'sent'. */
export async function settle(
  pg: Client,
  stats: FloodStats,
  recipients: FailoverRecipient[],
  timeoutMs: number,
): Promise<{ figures: Figures; settledMs: number; settled: boolean }> {
  const started = Date.now();
  for (;;) {
    const figures = await collectFigures(pg, stats, recipients);
    const settled = figures.undelivered === 0 && figures.sentLeft === 0;
    if (settled || Date.now() - started > timeoutMs) return { figures, settledMs: Date.now() - started, settled };
    await sleep(500);
  }
}

/** One line, every figure, `key=value`: what the report quotes. */
export function printFigures(name: string, f: Figures, extra: Record<string, string | number> = {}): void {
  const main =
    `sent=${f.sent} acknowledged=${f.acknowledged} storedRows=${f.storedRows} ` +
    `delivered=${f.delivered}/${f.expectedDeliveries} rawReceived=${f.rawReceived} rawDuplicates=${f.rawDuplicates} ` +
    `duplicateRows=${f.duplicateRows} lost=${f.lost}`;
  const detail =
    `(ackedLost=${f.ackedLost} notStored=${f.notStored} undelivered=${f.undelivered} misaddressed=${f.misaddressed} ` +
    `okIdMismatch=${f.okIdMismatch} strayRows=${f.strayRows} sentLeft=${f.sentLeft} seqGaps=${f.seqGaps} seqInversions=${f.seqInversions} ` +
    `duplicateReplies=${f.duplicateReplies} unavailable=${f.unavailable} otherErrors=${f.otherErrors})`;
  const rest = Object.entries(extra)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  console.log(`      FIGURES [${name}] ${main} ${detail} ${rest}`);
}

/**
 * Counts a node's warn-and-above log lines by message, from now on (spawnNode keeps only the
 * last 2000 lines): evidence for the report. Also keeps the first few lines of each kind.
 */
export class LogWatch {
  readonly counts = new Map<string, number>();
  readonly samples = new Map<string, string>();
  private buffer = "";

  constructor(readonly node: NodeProcess) {
    for (const line of node.output) if (!/^\s+at /.test(line)) this.line(line);
    const onData = (chunk: Buffer) => {
      this.buffer += chunk.toString();
      const lines = this.buffer.split("\n");
      this.buffer = lines.pop()!;
      lines.forEach((l) => this.line(l));
    };
    node.child.stdout!.on("data", onData);
    // Unstructured lines (libraries writing to the console): one count per line, stack frames skipped.
    node.child.stderr!.on("data", (c: Buffer) =>
      c
        .toString()
        .split("\n")
        .filter((l) => l.trim() && !/^\s+at /.test(l))
        .forEach((l) => this.line(`stderr: ${l}`)),
    );
  }

  private line(line: string): void {
    if (!line.trim() || /^\s+at /.test(line)) return; // stack frames of an unstructured line
    let key: string;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } | string };
      if ((entry.level ?? 0) < 40) return;
      const err = typeof entry.err === "string" ? entry.err : entry.err?.message;
      const level = entry.level === 40 ? "warn" : entry.level === 50 ? "error" : "fatal";
      key = `${level} "${entry.msg}"${err ? ` (${String(err).slice(0, 100)})` : ""}`;
    } catch {
      key = `raw: ${line.slice(0, 160).replace(/\s+/g, " ")}`;
    }
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (!this.samples.has(key)) this.samples.set(key, line.slice(0, 2000));
  }

  count(pattern: RegExp): number {
    let n = 0;
    for (const [k, v] of this.counts) if (pattern.test(k)) n += v;
    return n;
  }

  summary(): string {
    const node = this.node;
    const exit = node.child.exitCode ?? node.child.signalCode ?? "running";
    const lines = [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}x ${k}`);
    return `node pid=${node.pid} (${exit}): ${lines.length ? lines.slice(0, 15).join("; ") : "no warnings"}`;
  }
}

/** Spreads `n` new clients over the nodes, alternating their first node. */
export function spread<T>(n: number, make: (i: number, startIndex: number) => T, nodes: number): T[] {
  return Array.from({ length: n }, (_, i) => make(i, i % nodes));
}
