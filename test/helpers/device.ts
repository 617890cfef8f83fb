import { io } from "socket.io-client";
import type { ClientSocket, ReplyOf, RequestOf } from "../../src/client/TicksClient";
import type { ClientEventName, Message, StatusUpdate } from "../../src/protocol";

export type DeviceOptions = {
  userId: string;
  deviceId?: string;
  token?: string;
  /** Confirm live messages and backlog pages. @default true */
  autoAck?: boolean;
};

/**
 * One real socket.io-client device that records everything it receives, so tests can wait
 * for events instead of sleeping.
 */
export class Device {
  readonly socket: ClientSocket;
  readonly live: Message[] = [];
  readonly backlogPages: { messages: Message[]; remaining: boolean }[] = [];
  readonly statuses: StatusUpdate[] = [];
  readonly events: { event: string; args: unknown[] }[] = [];
  syncs: { delivered: number }[] = [];
  autoAck: boolean;

  constructor(url: string, options: DeviceOptions) {
    this.autoAck = options.autoAck ?? true;
    const auth: Record<string, string> = {};
    if (options.token !== undefined) auth.token = options.token;
    else auth.userId = options.userId;
    if (options.deviceId) auth.deviceId = options.deviceId;
    this.socket = io(url, { auth, transports: ["websocket"], reconnection: false, autoConnect: false });
    this.socket.onAny((event, ...args) => this.events.push({ event, args }));
    this.socket.on("message:new", (m, ack) => {
      this.live.push(m);
      if (this.autoAck) ack();
    });
    this.socket.on("message:backlog", (page, ack) => {
      this.backlogPages.push(page);
      if (this.autoAck) ack();
    });
    this.socket.on("message:status", (s) => this.statuses.push(s));
    this.socket.on("sync:complete", (s) => this.syncs.push(s));
  }

  /** Every message received, live or backlog, de-duplicated by id, in arrival order. */
  get received(): Message[] {
    const all = [...this.backlogPages.flatMap((p) => p.messages), ...this.live];
    const seen = new Set<string>();
    return all.filter((m) => !seen.has(m.id) && seen.add(m.id));
  }

  async connect(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("connect_error", reject);
      this.socket.connect();
    });
    return this;
  }

  /** Connects and waits for `sync:complete`. */
  async connectSynced(): Promise<this> {
    const before = this.syncs.length;
    await this.connect();
    await waitFor(() => this.syncs.length > before, "sync:complete");
    return this;
  }

  request<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<ReplyOf<E>> {
    return (this.socket.timeout(10_000).emitWithAck as unknown as (e: E, p: unknown) => Promise<ReplyOf<E>>)(
      event,
      payload,
    );
  }

  /** Emits anything, as a hostile or buggy client would. */
  raw(event: string, ...args: unknown[]): Promise<unknown> {
    return (this.socket.timeout(10_000).emitWithAck as unknown as (e: string, ...a: unknown[]) => Promise<unknown>)(
      event,
      ...args,
    );
  }

  close(): void {
    this.socket.disconnect();
  }
}

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves once nothing more can arrive soon: a fixed quiet period, for "nothing came" checks. */
export const quiet = (ms = 300) => new Promise((r) => setTimeout(r, ms));

let counter = 0;
export const uniqueId = (prefix: string) => `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
