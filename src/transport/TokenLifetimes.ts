/**
 * A token's `exp` holds for the whole connection: `auth:expiring` TOKEN_REFRESH_WINDOW_MS
 * before it, `auth:refresh` to replace the token, and at `exp` an unrefreshed socket gets
 * `auth:expired` and is disconnected by the server. All sockets of this node share one
 * DeadlineQueue (one timer); a token without `exp`, and dev mode, set no deadline at all.
 */
import type { TokenVerifier } from "../auth/TokenVerifier";
import { InvalidToken } from "../auth/TokenVerifier";
import { DeadlineQueue } from "../auth/DeadlineQueue";
import type { Logger } from "../log";
import { AppError } from "../protocol";
import type { TicksSocket } from "./types";

type Tracked = { socket: TicksSocket; expiresAt: number; warned: boolean };

export class TokenLifetimes {
  private readonly sockets = new Map<string, Tracked>();
  private readonly deadlines: DeadlineQueue<string>;

  /** @param verifier null in dev mode: no tokens, nothing to track, refresh is refused. */
  constructor(
    private readonly verifier: TokenVerifier | null,
    private readonly refreshWindowMs: number,
    private readonly log: Logger,
  ) {
    this.deadlines = new DeadlineQueue(
      (id) => this.due(id),
      Date.now,
      (err) => log.error({ err }, "token deadline handler failed"),
    );
  }

  /** Number of sockets with a deadline (for tests and the benchmark). */
  get tracked(): number {
    return this.deadlines.size;
  }

  /** Called once per connected socket, with the handshake token's expiry in `socket.data`. */
  track(socket: TicksSocket): void {
    if (!this.verifier) return;
    // One shared listener (EventEmitter calls it with the socket as `this`): no closure per socket.
    socket.on("disconnect", this.forget);
    const expiresAt = socket.data.tokenExpiresAt ?? null;
    if (expiresAt !== null) this.schedule(socket, expiresAt);
  }

  /** `auth:refresh`: a valid token for the same user replaces the socket's; otherwise nothing changes. */
  async refresh(socket: TicksSocket, token: string): Promise<{ expiresAt: string | null }> {
    if (!this.verifier) throw new AppError("BAD_REQUEST", "auth:refresh needs a server with tokens (AUTH_MODE=jwt)");
    let verified;
    try {
      verified = await this.verifier.verify(token);
    } catch (err) {
      if (!(err instanceof InvalidToken)) throw err;
      this.log.debug({ userId: socket.data.userId, reason: err.reason }, "token refresh refused");
      throw new AppError("UNAUTHORIZED", "token refused");
    }
    if (verified.userId !== socket.data.userId) throw new AppError("FORBIDDEN", "the token names another user");
    // The socket may have expired (and gone) while the token was being verified.
    if (!socket.connected) throw new AppError("UNAUTHORIZED", "the connection's token already expired");
    socket.data.tokenExpiresAt = verified.expiresAt;
    if (verified.expiresAt === null) this.unschedule(socket.id);
    else this.schedule(socket, verified.expiresAt);
    return { expiresAt: verified.expiresAt === null ? null : new Date(verified.expiresAt).toISOString() };
  }

  private readonly forget = (() => {
    const lifetimes = this;
    return function (this: TicksSocket) {
      lifetimes.unschedule(this.id);
    };
  })();

  private unschedule(id: string): void {
    this.sockets.delete(id);
    this.deadlines.delete(id);
  }

  stop(): void {
    this.deadlines.stop();
    this.sockets.clear();
  }

  private schedule(socket: TicksSocket, expiresAt: number): void {
    this.sockets.set(socket.id, { socket, expiresAt, warned: false });
    this.deadlines.set(socket.id, expiresAt - this.refreshWindowMs);
  }

  private due(id: string): void {
    const entry = this.sockets.get(id);
    if (!entry) return;
    if (!entry.warned && Date.now() < entry.expiresAt) {
      entry.warned = true;
      entry.socket.emit("auth:expiring", { expiresAt: new Date(entry.expiresAt).toISOString() });
      this.deadlines.set(id, entry.expiresAt);
      return;
    }
    this.sockets.delete(id);
    entry.socket.emit("auth:expired", {});
    // Sends the disconnect packet (the client sees "io server disconnect" and does not
    // reconnect by itself) and closes the connection once it is written.
    entry.socket.disconnect(true);
  }
}
