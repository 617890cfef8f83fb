import type { ClientEventName, Message, SendRequest, StatusUpdate } from "../../src/protocol";
import { uniqueId } from "./ids";
import { expectOk } from "./replies";
import { clientSocket, connectSocket, type ClientSocket, type ReplyOf, type RequestOf } from "./socket";
import { waitFor } from "./wait";

// Where most tests have always found them.
export { uniqueId } from "./ids";
export { quiet, waitFor } from "./wait";

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
  readonly userId: string;

  constructor(url: string, options: DeviceOptions) {
    this.userId = options.userId;
    this.autoAck = options.autoAck ?? true;
    const auth: Record<string, string> = {};
    if (options.token !== undefined) auth.token = options.token;
    else auth.userId = options.userId;
    if (options.deviceId) auth.deviceId = options.deviceId;
    this.socket = clientSocket(url, auth);
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

  /** Connects; rejects with the server's connect_error (the handshake refusal). */
  async connect(): Promise<this> {
    await connectSocket(this.socket);
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

  /**
   * Sends a message (a fresh clientMsgId unless given) and answers the stored message; an error reply
   * fails the test with its code and text.
   */
  async send(to: string | { to: string } | { conversationId: string }, content: string, clientMsgId = uniqueId("c")): Promise<Message> {
    const target: Omit<SendRequest, "content" | "clientMsgId"> = typeof to === "string" ? { to } : to;
    const reply = await this.request("message:send", { clientMsgId, ...target, content });
    expectOk(reply, `message:send from ${this.userId}`);
    return reply.message;
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
