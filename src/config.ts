/**
 * The only reader of process.env. Every setting is validated at start; a bad value stops
 * the process with a message naming the variable. An empty variable counts as unset.
 */
import { z } from "zod";
import { authConfig, type AuthConfig } from "./authConfig";
import { ConfigError, databaseConfig, isOrigin, redisConfig, refuse, type DatabaseConfig, type RedisConfig } from "./configParts";
import { mediaConfig, mediaEnv, type MediaConfig } from "./mediaConfig";

const DAY_MS = 24 * 60 * 60 * 1000;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  /** TCP port of the HTTP + Socket.IO server. @default 3000 */
  PORT: int(0, 65535).default(3000),
  /** Interface to listen on. @default "0.0.0.0" */
  HOST: z.string().default("0.0.0.0"),
  /** PostgreSQL URL. Unset: an embedded PGlite database under DATA_DIR (one process only). */
  DATABASE_URL: z.string().url().optional(),
  /** Connections in each process's main PostgreSQL pool; the hot path adds APPEND_LANES + 3 (docs/scaling.md). @default 10 */
  DATABASE_POOL_MAX: int(1, 1000).default(10),
  /**
   * Write lanes: append batches in flight at once, never two with one conversation
   * (storage/append/lanes.ts); each adds a hot-path connection. PGlite: 1.
   * @default 2
   */
  APPEND_LANES: int(1, 64).default(2),
  /** A PostgreSQL query or connect unanswered this long fails (UNAVAILABLE) instead of hanging. @default 5000 */
  DATABASE_TIMEOUT_MS: int(100).default(5000),
  /** Where the embedded PGlite database lives when DATABASE_URL is unset. @default "./data" */
  DATA_DIR: z.string().default("./data"),
  /** Redis URL for the cluster adapter, presence and rate limits. Unset: one node, in memory. */
  REDIS_URL: z.string().url().optional(),
  /** Redis Cluster seeds, comma-separated `host:port`, instead of REDIS_URL (never both; docs/scaling.md). */
  REDIS_CLUSTER_NODES: z.string().optional(),
  /** Which adapter carries rooms across nodes (docs/cluster.md). @default "sharded"; "classic" with a Redis Cluster */
  REDIS_ADAPTER: z.enum(["sharded", "classic"]).optional(),
  /** Prefix of every Redis key and channel Ticks uses, so deployments can share a Redis. @default "ticks" */
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/).default("ticks"),
  /** A user whose node died is shown offline within this time. @default 30000 */
  PRESENCE_TTL_MS: int(300).default(30_000),
  /** How long a node's lease on a background job lasts without renewal. @default 15000 */
  LEADER_LEASE_MS: int(100).default(15_000),
  /** HS256 secret for handshake JWTs; at least 32 characters. */
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters").optional(),
  /** PEM public key (RSA, EC P-256/384/521 or Ed25519) for handshake JWTs; `\n` escapes allowed. */
  JWT_PUBLIC_KEY: z.string().optional(),
  /** URL of the identity provider's JSON Web Key Set (keys chosen by `kid`). */
  JWT_JWKS_URL: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//i.test(u), "JWT_JWKS_URL must be an http(s) URL")
    .optional(),
  /** When set, a token's `iss` must equal it. */
  JWT_ISSUER: z.string().optional(),
  /** When set, a token's `aud` must contain it. */
  JWT_AUDIENCE: z.string().optional(),
  /** After a JWKS fetch, an unknown `kid` fetches again only after this long. @default 30000 */
  JWKS_COOLDOWN_MS: int(0).optional(),
  /** Cached JWKS keys are fetched again after this long. @default 600000 */
  JWKS_CACHE_MAX_AGE_MS: int(1000).optional(),
  /** Longest wait for the JWKS endpoint; a token waiting on it is refused after this. @default 5000 */
  JWKS_TIMEOUT_MS: int(1, 60_000).optional(),
  /** `auth:expiring` is sent this long before a token's `exp`. @default 60000 */
  TOKEN_REFRESH_WINDOW_MS: int(0).default(60_000),
  /** `jwt` or `dev` (trust `auth.userId`). @default "jwt" with a JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL, else "dev" */
  AUTH_MODE: z.enum(["jwt", "dev"]).optional(),
  NODE_ENV: z.string().default("development"),
  /** Days a message is kept; decimals allowed. @default 30 */
  MESSAGE_TTL_DAYS: z.coerce.number().positive().max(36500).default(30),
  /** How long after sending its sender may edit a message. @default 900000 (15 minutes) */
  EDIT_WINDOW_MS: int(0).default(15 * 60_000),
  /** How long after sending its sender may delete a message for everyone. @default 172800000 (48 hours) */
  DELETE_WINDOW_MS: int(0).default(48 * 3_600_000),
  /** Maximum content length in Unicode code points. @default 4096 */
  MAX_CONTENT_LENGTH: int(1, 1_000_000).default(4096),
  /** How often expired messages are deleted. @default 60000 */
  EXPIRY_SWEEP_INTERVAL_MS: int(100).default(60_000),
  /** A live message not confirmed this long after sending is offered again. @default 30000 */
  REDELIVERY_AFTER_MS: int(100).default(30_000),
  /** Events a user may send per second, across all their devices; 0 turns the limit off. @default 100 */
  RATE_LIMIT_EVENTS_PER_SEC: int(0).default(100),
  /**
   * Extra events a user may send above RATE_LIMIT_EVENTS_PER_SEC, refilled every 10 s: room
   * for a pasted burst or a reconnect's gap-fill (docs/rate-limits.md). 0: no burst. @default 500
   */
  RATE_LIMIT_BURST: int(0).default(500),
  /** The most members a group may have, the creator included (group:create, group:add). @default 1024 */
  GROUP_MAX_MEMBERS: int(2, 10_000).default(1024),
  /**
   * Groups one user may create in an hour, counted in the database across every node; 0 turns
   * the cap off. @default 50
   */
  GROUP_CREATE_PER_HOUR: int(0).default(50),
  /** Messages in one `message:backlog` page. @default 100 */
  BACKLOG_PAGE_SIZE: int(1, 1000).default(100),
  /** How long the server waits for a device's `message:new` / backlog receipt. @default 10000 */
  DELIVERY_ACK_TIMEOUT_MS: int(100).default(10_000),
  /**
   * Outgoing bytes a socket may have queued (a device that stops reading) before the server
   * disconnects it; its messages wait in the backlog. 0 turns the limit off. @default 1048576
   */
  MAX_SOCKET_BUFFER_BYTES: int(0)
    .refine((v) => v === 0 || v >= 65_536, "0 (no limit) or at least 65536")
    .default(1024 * 1024),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /**
   * Browser origins allowed to connect, comma-separated (`https://app.example.com,http://localhost:5173`),
   * or `*` for any. Same-origin pages and clients that send no Origin (native apps, servers) are
   * always allowed. @default any origin with AUTH_MODE=dev; same-origin only with JWT auth
   */
  CORS_ORIGINS: z
    .string()
    .transform((v) => v.split(",").map((o) => o.trim()).filter((o) => o !== ""))
    .pipe(z.array(z.string().refine(isOrigin, "each entry must be `*` or an origin like https://app.example.com (no path)")).min(1))
    .optional(),
  /** `off` stops serving the web chat page at `/` (the SDK bundle stays at /sdk/ticks-client.js). @default "on" */
  WEB_APP: z.enum(["on", "off"]).default("on"),
  /**
   * Full URL of a Matrix push gateway's notify endpoint, e.g.
   * `http://sygnal:5000/_matrix/push/v1/notify` (docs/push.md). Unset: no pushes, the outbox stays empty.
   */
  PUSH_GATEWAY_URL: z
    .string()
    .url()
    // zod runs refinements even after url() failed: an invalid URL must not throw here.
    .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), "must be an http:// or https:// URL")
    .optional(),
  /** A recipient whose devices did not confirm a message this long after it was stored gets a push. @default 2000 */
  PUSH_DELAY_MS: int(0, DAY_MS).default(2000),
  /** How long one POST to the gateway may take before it counts as failed (and is retried). @default 5000 */
  PUSH_TIMEOUT_MS: int(100, 120_000).default(5000),
  /** A push the gateway keeps refusing is retried, with growing delays, for this long, then dropped. @default 3600000 */
  PUSH_RETRY_FOR_MS: int(0, 7 * DAY_MS).default(3_600_000),
  /** First retry delay; each further retry waits about twice as long (with jitter, at most 5 minutes). @default 1000 */
  PUSH_RETRY_MIN_MS: int(10, 300_000).default(1000),
  /** `true` puts the message text into the push (`content.body`); off by default for privacy. @default false */
  PUSH_INCLUDE_CONTENT: z.enum(["true", "false"]).default("false"),
  ...mediaEnv,
});

/** Which browser origins may open a connection (see src/transport/origins.ts). */
export type OriginPolicy = { allow: "any" } | { allow: "same-origin" } | { allow: "list"; origins: string[] };

export type Config = {
  port: number;
  host: string;
  database: DatabaseConfig;
  /** APPEND_LANES; 1 on PGlite (one connection, nothing runs beside it). */
  appendLanes: number;
  redis: RedisConfig | null;
  presenceTtlMs: number;
  leaderLeaseMs: number;
  auth: AuthConfig;
  /** `auth:expiring` goes out this long before a token's `exp`. */
  tokenRefreshWindowMs: number;
  messageTtlMs: number;
  maxContentLength: number;
  editWindowMs: number;
  deleteWindowMs: number;
  expirySweepIntervalMs: number;
  backlogPageSize: number;
  redeliveryAfterMs: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
  groupMaxMembers: number;
  groupCreatePerHour: number;
  deliveryAckTimeoutMs: number;
  maxSocketBufferBytes: number;
  logLevel: z.infer<typeof envSchema>["LOG_LEVEL"];
  origins: OriginPolicy;
  webApp: boolean;
  /** Push notifications through a Matrix push gateway; null when PUSH_GATEWAY_URL is unset. */
  push: PushConfig | null;
  media: MediaConfig;
};

export type PushConfig = {
  gatewayUrl: string;
  delayMs: number;
  timeoutMs: number;
  retryForMs: number;
  retryMinMs: number;
  includeContent: boolean;
};

export type { AuthConfig, ClaimChecks, JwksConfig } from "./authConfig";

export { ConfigError };

const cleanEnv = (env: NodeJS.ProcessEnv) =>
  Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));

/** Only the database settings: what the Knex CLI needs, without the server's secrets. */
export function loadDatabaseConfig(env: NodeJS.ProcessEnv = process.env): Config["database"] {
  const e = envSchema.pick({ DATABASE_URL: true, DATA_DIR: true }).parse(cleanEnv(env));
  return e.DATABASE_URL ? { kind: "postgres", url: e.DATABASE_URL } : { kind: "pglite", dataDir: e.DATA_DIR };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(cleanEnv(env));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  const auth = authConfig(e, e.NODE_ENV === "production");
  return {
    port: e.PORT,
    host: e.HOST,
    database: databaseConfig(e),
    appendLanes: e.DATABASE_URL ? e.APPEND_LANES : 1,
    redis: redisConfig(e.REDIS_URL, e.REDIS_CLUSTER_NODES, e.REDIS_ADAPTER, e.REDIS_PREFIX),
    presenceTtlMs: e.PRESENCE_TTL_MS,
    leaderLeaseMs: e.LEADER_LEASE_MS,
    auth,
    tokenRefreshWindowMs: e.TOKEN_REFRESH_WINDOW_MS,
    messageTtlMs: Math.round(e.MESSAGE_TTL_DAYS * DAY_MS),
    maxContentLength: e.MAX_CONTENT_LENGTH,
    editWindowMs: e.EDIT_WINDOW_MS,
    deleteWindowMs: e.DELETE_WINDOW_MS,
    expirySweepIntervalMs: e.EXPIRY_SWEEP_INTERVAL_MS,
    backlogPageSize: e.BACKLOG_PAGE_SIZE,
    redeliveryAfterMs: e.REDELIVERY_AFTER_MS,
    rateLimitPerSec: e.RATE_LIMIT_EVENTS_PER_SEC,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    groupMaxMembers: e.GROUP_MAX_MEMBERS,
    groupCreatePerHour: e.GROUP_CREATE_PER_HOUR,
    deliveryAckTimeoutMs: e.DELIVERY_ACK_TIMEOUT_MS,
    maxSocketBufferBytes: e.MAX_SOCKET_BUFFER_BYTES,
    logLevel: e.LOG_LEVEL,
    origins: originPolicy(e.CORS_ORIGINS, auth.mode),
    webApp: e.WEB_APP === "on",
    push: e.PUSH_GATEWAY_URL
      ? {
          gatewayUrl: e.PUSH_GATEWAY_URL,
          delayMs: e.PUSH_DELAY_MS,
          timeoutMs: e.PUSH_TIMEOUT_MS,
          retryForMs: e.PUSH_RETRY_FOR_MS,
          retryMinMs: e.PUSH_RETRY_MIN_MS,
          includeContent: e.PUSH_INCLUDE_CONTENT === "true",
        }
      : null,
    media: mediaConfig(e, refuse),
  };
}

function originPolicy(listed: string[] | undefined, mode: "jwt" | "dev"): OriginPolicy {
  if (!listed) return mode === "dev" ? { allow: "any" } : { allow: "same-origin" };
  return listed.includes("*") ? { allow: "any" } : { allow: "list", origins: listed };
}
