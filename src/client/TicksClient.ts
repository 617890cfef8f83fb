/**
 * The typed client SDK: a socket.io-client socket speaking the protocol, with a request
 * helper that answers the event's reply type and a message feed that de-duplicates by id
 * (the server delivers at least once) and confirms each message after the handler ran.
 */
import { io, type Socket } from "socket.io-client";
import type {
  BacklogPage,
  ClientEventName,
  ClientToServerEvents,
  Message,
  ServerToClientEvents,
} from "../protocol/events";

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type ReplyOf<E extends ClientEventName> = Parameters<Parameters<ClientToServerEvents[E]>[1]>[0];
export type RequestOf<E extends ClientEventName> = Parameters<ClientToServerEvents[E]>[0];

export type ClientAuth = { token?: string; userId?: string; deviceId?: string };
export type ClientOptions = {
  /** Clustered servers accept only WebSocket. @default ["websocket"] */
  transports?: ("websocket" | "polling")[];
  /** @default true */
  reconnection?: boolean;
  /** How long a request waits for its acknowledgement. @default 10000 */
  timeoutMs?: number;
};

export type MessageSource = "live" | "backlog";

export class TicksClient {
  readonly socket: ClientSocket;
  private readonly seen = new Set<string>();
  private readonly timeoutMs: number;

  constructor(url: string, auth: ClientAuth, options: ClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.socket = io(url, {
      auth,
      transports: options.transports ?? ["websocket"],
      reconnection: options.reconnection ?? true,
      autoConnect: false,
    });
  }

  /** Connects; rejects with the server's reason (e.g. "unauthorized") if refused. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.socket.off("connect", onConnect);
        reject(err);
      };
      const onConnect = () => {
        this.socket.off("connect_error", onError);
        resolve();
      };
      this.socket.once("connect", onConnect);
      this.socket.once("connect_error", onError);
      this.socket.connect();
    });
  }

  request<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<ReplyOf<E>> {
    const timed = this.socket.timeout(this.timeoutMs);
    // Bound to its socket: emitWithAck reads `this`, so a detached reference would throw.
    const emit = timed.emitWithAck.bind(timed) as unknown as (ev: E, p: RequestOf<E>) => Promise<ReplyOf<E>>;
    return emit(event, payload);
  }

  /**
   * Calls `handler` once per message id, live or from the backlog, then confirms receipt
   * (the delivery receipt). Backlog pages are confirmed after every message in them ran.
   */
  onMessage(handler: (message: Message, source: MessageSource) => void | Promise<void>): void {
    const accept = async (message: Message, source: MessageSource) => {
      if (this.seen.has(message.id)) return;
      this.seen.add(message.id);
      await handler(message, source);
    };
    this.socket.on("message:new", (message, ack) => {
      void Promise.resolve(accept(message, "live")).then(() => ack());
    });
    this.socket.on("message:backlog", (page: BacklogPage, ack) => {
      void (async () => {
        for (const message of page.messages) await accept(message, "backlog");
        ack();
      })();
    });
  }

  /** Resolves at the next `sync:complete`. */
  synced(): Promise<{ delivered: number }> {
    return new Promise((resolve) => this.socket.once("sync:complete", resolve));
  }

  close(): void {
    this.socket.disconnect();
  }
}
