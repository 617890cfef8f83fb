/**
 * Clients of the fault suite that fail over between nodes the way a real app would: on a
 * disconnect or a refused connection they open a fresh socket to the next node.
 */
import type { Message, Reply, SendRequest, SendResult } from "../../src/protocol";
import { ArrivalOrder } from "./arrivalOrder";
import { clientSocket, type ClientSocket } from "./socket";
import { waitFor } from "./wait";

export type SendReply = Reply<SendResult>;

export type FailoverOptions = {
  /** socket.io-client `retries`. @default 10 */
  retries?: number;
  /** socket.io-client `ackTimeout` (ms). @default 2000 */
  ackTimeout?: number;
  /** Pause before opening a socket to the next node. @default 100-300 ms, jittered */
  failoverDelayMs?: () => number;
  /** The handshake's `auth` (a JWT server: `{ token }`). @default { userId } (dev auth) */
  auth?: Record<string, unknown>;
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
  /** Why each failover happened: a disconnect reason or a connect_error message, counted. */
  readonly failoverReasons = new Map<string, number>();
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
    const socket = clientSocket(
      url,
      this.options.auth ?? { userId: this.userId },
      { retries: this.options.retries ?? 10, ackTimeout: this.options.ackTimeout ?? 2000, timeout: 5000 },
    );
    this.socket = socket;
    this.attach(socket, generation);
    socket.on("connect", () => {
      if (generation !== this.generation) return;
      this.connects++;
      this.connectedWaiters.splice(0).forEach((w) => w());
    });
    const failover = (reason: string) => {
      if (generation !== this.generation || this.closed) return;
      this.failoverReasons.set(reason, (this.failoverReasons.get(reason) ?? 0) + 1);
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
    socket.on("connect_error", (err) => failover(`connect_error: ${err.message}`));
    socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") failover(reason);
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
  /** The order messages arrived in, against what the docs promise. */
  readonly order = new ArrivalOrder();

  /** First arrivals with a lower seq than one already received in that conversation. */
  get seqInversions(): number {
    return this.order.totalInversions;
  }

  protected attach(socket: ClientSocket, generation: number): void {
    const record = (m: Message) => {
      this.raw++;
      if (m.to !== this.userId) this.misaddressed.push(m);
      if (this.received.has(m.id)) return;
      this.received.set(m.id, m);
      this.arrivedAt.set(m.id, Date.now());
    };
    this.order.newSync();
    socket.on("message:new", (m, ack) => {
      this.liveRaw++;
      record(m);
      this.order.live(m);
      ack();
    });
    socket.on("message:backlog", (page, ack) => {
      this.backlogPages++;
      this.backlogRaw += page.messages.length;
      page.messages.forEach(record);
      this.order.backlog(page.messages);
      ack();
    });
    socket.on("sync:complete", () => {
      if (generation === this.generation) this.syncs++;
    });
  }

  /** Connects and waits for the first `sync:complete`. */
  async startSynced(timeoutMs = 20_000): Promise<void> {
    await this.start();
    await waitFor(() => this.syncs > 0, `${this.userId}: a first sync:complete`, timeoutMs, 20);
  }
}
