/**
 * Typed requests over a socket: the event's payload in, its acknowledgement out. A request
 * rejects with RequestTimeout when no acknowledgement comes in time or the socket drops
 * first (the server may or may not have handled it: only idempotent requests may be repeated).
 */
import type { Socket } from "socket.io-client";
import type { ErrorCode } from "../protocol/errors";
import type { ClientEventName, ClientToServerEvents, ServerToClientEvents } from "../protocol/events";

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type ReplyOf<E extends ClientEventName> = Parameters<Parameters<ClientToServerEvents[E]>[1]>[0];
export type RequestOf<E extends ClientEventName> = Parameters<ClientToServerEvents[E]>[0];
export type OkOf<E extends ClientEventName> = Extract<ReplyOf<E>, { ok: true }>;

/** No acknowledgement: timed out, or the connection dropped while waiting. */
export class RequestTimeout extends Error {
  constructor(readonly event: string) {
    super(`no acknowledgement for ${event}`);
    this.name = "RequestTimeout";
  }
}

/** The server answered `{ ok: false }`. */
export class ServerError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "ServerError";
  }
}

/** Emits `event` and resolves its raw reply (`ok` true or false). Untyped: also for events newer than this build's protocol. */
export function emitRaw(socket: Socket, event: string, payload: unknown, timeoutMs: number): Promise<unknown> {
  return socket
    .timeout(timeoutMs)
    .emitWithAck(event, payload)
    .catch(() => {
      throw new RequestTimeout(event);
    });
}

export function request<E extends ClientEventName>(
  socket: ClientSocket,
  event: E,
  payload: RequestOf<E>,
  timeoutMs: number,
): Promise<ReplyOf<E>> {
  return emitRaw(socket as unknown as Socket, event, payload, timeoutMs) as Promise<ReplyOf<E>>;
}

/** Like request(), but an `{ ok: false }` reply rejects with ServerError. */
export async function call<E extends ClientEventName>(
  socket: ClientSocket,
  event: E,
  payload: RequestOf<E>,
  timeoutMs: number,
): Promise<OkOf<E>> {
  const reply = (await request(socket, event, payload, timeoutMs)) as ReplyOf<E> & { ok: boolean };
  if (reply.ok) return reply as OkOf<E>;
  const { error } = reply as unknown as { error: { code: ErrorCode; message: string } };
  throw new ServerError(error.code, error.message);
}
