/**
 * A token's `exp` holds for the whole connection: `auth:expiring` TOKEN_REFRESH_WINDOW_MS
 * before it, `auth:refresh` to replace the token, and at `exp` an unrefreshed socket gets
 * `auth:expired` and is disconnected by the server. All sockets of this node share one
 * DeadlineQueue (one timer); a token without `exp`, and dev mode, set no deadline at all.
 */
import { InvalidToken, type TokenVerifier } from "../auth/TokenVerifier";
import { DeadlineQueue } from "../auth/DeadlineQueue";
import type { Logger } from "../log";
import { AppError } from "../protocol";
import { logContext, type TicksSocket } from "./types";

/**
 * The deadline queue is keyed by the socket itself and the token's `exp` lives in
 * `socket.data.tokenExpiresAt`, so a tracked socket costs one Map entry and one heap node.
 * Which deadline fired tells the phase: before `exp` it is the warning, at `exp` the end.
 */
export class TokenLifetimes {
  private readonly deadlines: DeadlineQueue<TicksSocket>;
  /** The one `disconnect` listener of every tracked socket (EventEmitter passes the socket as `this`). */
  private readonly forget: (this: TicksSocket) => void;

  /** @param verifier null in dev mode: no tokens, nothing to track, refresh is refused. */
  constructor(
    private readonly verifier: TokenVerifier | null,
    private readonly refreshWindowMs: number,
    private readonly log: Logger,
  ) {
    this.deadlines = new DeadlineQueue(
      (socket, at) => this.due(socket, at),
      Date.now,
      (err) => log.error({ err }, "token deadline handler failed"),
    );
    const deadlines = this.deadlines;
    this.forget = function (this: TicksSocket) {
      deadlines.delete(this);
    };
  }

  /** Number of sockets with a deadline (the ticks_token_deadlines gauge, tests, the benchmark). */
  get tracked(): number {
    return this.deadlines.size;
  }

  /** Called once per connected socket, with the handshake token's expiry in `socket.data`. */
  track(socket: TicksSocket): void {
    if (!this.verifier) return;
    // One shared listener (EventEmitter calls it with the socket as `this`): no closure per socket.
    socket.on("disconnect", this.forget);
    this.schedule(socket);
  }

  /** `auth:refresh`: a valid token for the same user replaces the socket's; otherwise nothing changes. */
  async refresh(socket: TicksSocket, token: string): Promise<{ expiresAt: string | null }> {
    if (!this.verifier) throw new AppError("BAD_REQUEST", "auth:refresh needs a server with tokens (AUTH_MODE=jwt)");
    let verified;
    try {
      verified = await this.verifier.verify(token);
    } catch (err) {
      if (!(err instanceof InvalidToken)) throw err;
      this.log.debug({ ...logContext(socket), reason: err.reason }, "token refresh refused");
      throw new AppError("UNAUTHORIZED", "token refused");
    }
    if (verified.userId !== socket.data.userId) throw new AppError("FORBIDDEN", "the token names another user");
    // The socket may have expired (and gone) while the token was being verified.
    if (!socket.connected) throw new AppError("UNAUTHORIZED", "the connection's token already expired");
    socket.data.tokenExpiresAt = verified.expiresAt;
    this.schedule(socket);
    return { expiresAt: verified.expiresAt === null ? null : new Date(verified.expiresAt).toISOString() };
  }

  stop(): void {
    this.deadlines.stop();
  }


  /** The warning first (at once if the token is already inside the window); none without `exp`. */
  private schedule(socket: TicksSocket): void {
    const expiresAt = socket.data.tokenExpiresAt ?? null;
    if (expiresAt === null) this.deadlines.delete(socket);
    else this.deadlines.set(socket, expiresAt - this.refreshWindowMs);
  }

  private due(socket: TicksSocket, at: number): void {
    const expiresAt = socket.data.tokenExpiresAt ?? null;
    if (expiresAt === null) return;
    if (at < expiresAt) {
      socket.emit("auth:expiring", { expiresAt: new Date(expiresAt).toISOString() });
      this.deadlines.set(socket, expiresAt);
      return;
    }
    socket.emit("auth:expired", {});
    // Sends the disconnect packet (the client sees "io server disconnect" and does not
    // reconnect by itself) and closes the connection once it is written.
    socket.disconnect(true);
  }
}
