import type { ClientEventName } from "../protocol/events";
import { Connection } from "./Connection";
import { Emitter } from "./Emitter";
import { call, request, type ClientSocket, type OkOf, type ReplyOf, type RequestOf } from "./request";
import type { TicksClientEvents, TicksClientOptions } from "./clientTypes";

export const closedError = () => new Error("the client is closed");

/**
 * What every part of the SDK talks through: the connection (Connection.ts) and typed
 * requests over it. TicksClient builds the chat on top.
 */
export class ClientBase extends Emitter<TicksClientEvents> {
  readonly socket: ClientSocket;
  protected readonly connection: Connection;

  constructor(options: TicksClientOptions) {
    super();
    this.connection = new Connection(options);
    this.socket = this.connection.socket;
  }

  /** The signed-in user (from userId, or the token's `sub`). */
  get me(): string | undefined {
    return this.connection.me;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** A typed request: resolves the reply, `ok` or not; rejects with RequestTimeout without an ack. */
  request<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<ReplyOf<E>> {
    if (this.connection.isClosed) return Promise.reject(closedError());
    return request(this.socket, event, payload, this.connection.ackTimeoutMs);
  }

  /** A typed request that rejects with ServerError on `{ ok: false }`. */
  call<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<OkOf<E>> {
    // After close() a request would sit in socket.io-client's send buffer with a live ack
    // timer that holds the whole client for ackTimeoutMs, and the sync work queued behind it
    // (one conversation's lock) re-arms that for every step: a closed client stayed reachable
    // as long as its sync kept asking. Refusing at once lets it go.
    if (this.connection.isClosed) return Promise.reject(closedError());
    return call(this.socket, event, payload, this.connection.ackTimeoutMs);
  }
}
