/**
 * One device's connection: the socket, who it authenticates as, and how it comes back.
 * - every handshake asks getToken() (or uses the fixed token / dev user id), so each
 *   reconnect carries a fresh token;
 * - socket.io-client reconnects by itself after a dropped transport (with backoff); after
 *   the server ended the connection (`io server disconnect`: token expired, shutdown) or
 *   refused a handshake it had accepted before (a token that expired meanwhile), it does
 *   not, so this class does, with backoff and at most MAX_REFUSALS refusals in a row;
 * - `auth:expiring` → getToken() → `auth:refresh { token }`.
 */
import { io, type ManagerOptions, type SocketOptions } from "socket.io-client";
import { backoffDelay } from "./backoff";
import { Emitter } from "./Emitter";
import { request, ServerError, type ClientSocket } from "./request";
import { subjectOf } from "./token";

export type ConnectionOptions = {
  /** Server URL. In a page served by the server: `location.origin`. */
  url: string;
  /** Dev-mode servers only (AUTH_MODE=dev): the user id, taken on trust. */
  userId?: string;
  /** A JWT. Prefer getToken for tokens that expire. */
  token?: string;
  /** Called at every connect and when the server warns the token is expiring. */
  getToken?: () => string | Promise<string>;
  /** Names this device (1–64 chars [A-Za-z0-9._-]). */
  deviceId?: string;
  /** Clustered servers accept WebSocket only. @default ["websocket"] */
  transports?: ("websocket" | "polling")[];
  /** How long a request waits for its acknowledgement. @default 10000 */
  ackTimeoutMs?: number;
  /** Reconnect backoff. @default 500 to 30000 */
  reconnectDelayMs?: number;
  reconnectDelayMaxMs?: number;
  /** Anything else for socket.io-client (path, extraHeaders…). */
  socket?: Partial<ManagerOptions & SocketOptions>;
};

export type ConnectionEvents = {
  connected(): void;
  disconnected(reason: string): void;
  /** A connection attempt failed; `refused` when the server turned the handshake down. */
  connect_error(error: Error & { data?: unknown }, refused: boolean): void;
  /** The server warned the token expires soon (`auth:expiring`); a refresh follows when getToken is set. */
  expiring(info: { expiresAt: string }): void;
  /** A token was refreshed on the live connection. */
  token(info: { expiresAt: string | null }): void;
  /** The token expired unrefreshed (`auth:expired`); the server disconnects, the client reconnects. */
  expired(): void;
  error(error: Error): void;
};

/** Consecutive refused handshakes (with fresh tokens) before giving up. */
const MAX_REFUSALS = 4;

export class Connection extends Emitter<ConnectionEvents> {
  readonly socket: ClientSocket;
  private user: string | undefined;
  private everConnected = false;
  private refusals = 0;
  private closed = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: ConnectionOptions) {
    super();
    this.user = options.userId ?? (options.token ? subjectOf(options.token) : undefined);
    this.socket = io(options.url, {
      autoConnect: false,
      // Its own Manager, never socket.io-client's shared one: the first socket made for a URL
      // is otherwise kept in that module-level cache (with every listener, i.e. its whole
      // TicksClient) for the life of the process, even after close().
      forceNew: true,
      transports: options.transports ?? ["websocket"],
      reconnectionDelay: options.reconnectDelayMs ?? 500,
      reconnectionDelayMax: options.reconnectDelayMaxMs ?? 30_000,
      // A function: called at every (re)connect, so each handshake carries a fresh token.
      auth: (cb) => {
        void this.handshakeAuth().then(cb, (err: Error) => {
          this.emit("error", err);
          cb({});
        });
      },
      ...options.socket,
    }) as ClientSocket;
    this.listen();
  }

  /** The signed-in user (the dev user id, or the token's `sub`). */
  get me(): string | undefined {
    return this.user;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get ackTimeoutMs(): number {
    return this.options.ackTimeoutMs ?? 10_000;
  }

  /** Resolves at the first connection; rejects if the server refuses the first handshake. */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("this client was closed: create a new TicksClient"));
    return new Promise((resolve, reject) => {
      const offConnected = this.once("connected", () => {
        offError();
        resolve();
      });
      const offError = this.on("connect_error", (err, refused) => {
        if (!refused || this.everConnected) return;
        offConnected();
        offError();
        reject(err);
      });
      this.socket.connect();
    });
  }

  /** Resolves once connected (at once if connected); rejects once closed. */
  whenConnected(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("connect", () => resolve()));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.socket.disconnect();
  }

  private async handshakeAuth(): Promise<Record<string, string>> {
    const auth: Record<string, string> = {};
    if (this.options.deviceId) auth.deviceId = this.options.deviceId;
    if (this.options.userId) auth.userId = this.options.userId;
    const token = this.options.getToken ? await this.options.getToken() : this.options.token;
    if (token) {
      auth.token = token;
      this.user = subjectOf(token) ?? this.user;
    }
    return auth;
  }

  private listen(): void {
    const s = this.socket;
    s.on("connect", () => {
      this.everConnected = true;
      this.refusals = 0;
      this.emit("connected");
    });
    s.on("disconnect", (reason) => {
      this.emit("disconnected", reason);
      // The server ended this connection: socket.io-client will not come back by itself.
      if (reason === "io server disconnect" && !this.closed) this.reconnectLater();
    });
    s.on("connect_error", (err: Error & { data?: unknown }) => {
      // A middleware refusal carries data and leaves the socket inactive; a transport error does neither.
      const refused = err.data !== undefined || !s.active;
      this.emit("connect_error", err, refused);
      if (!refused || this.closed || !this.everConnected) return;
      if (++this.refusals <= MAX_REFUSALS && this.options.getToken) this.reconnectLater();
    });
    s.on("auth:expiring", (info) => {
      this.emit("expiring", info);
      void this.refreshToken();
    });
    s.on("auth:expired", () => this.emit("expired"));
  }

  private async refreshToken(): Promise<void> {
    if (!this.options.getToken) return;
    try {
      const token = await this.options.getToken();
      const reply = await request(this.socket, "auth:refresh", { token }, this.ackTimeoutMs);
      if (!reply.ok) throw new ServerError(reply.error.code, reply.error.message);
      this.user = subjectOf(token) ?? this.user;
      this.emit("token", { expiresAt: reply.expiresAt });
    } catch (err) {
      // The server disconnects at expiry; the reconnect then asks getToken() again.
      this.emit("error", err as Error);
    }
  }

  private reconnectLater(): void {
    clearTimeout(this.reconnectTimer);
    const delay = backoffDelay(this.refusals, this.options.reconnectDelayMs ?? 500, this.options.reconnectDelayMaxMs ?? 30_000);
    this.reconnectTimer = setTimeout(() => {
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, delay);
  }
}
