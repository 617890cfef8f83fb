/**
 * The only reader of process.env. Every setting is validated at start; a bad value stops
 * the process with a message naming the variable. An empty variable counts as unset.
 */
import { z } from "zod";

const DAY_MS = 24 * 60 * 60 * 1000;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  /** TCP port of the HTTP + Socket.IO server. @default 3000 */
  PORT: int(0, 65535).default(3000),
  /** Interface to listen on. @default "0.0.0.0" */
  HOST: z.string().default("0.0.0.0"),
  /** PostgreSQL URL. Unset: an embedded PGlite database under DATA_DIR (one process only). */
  DATABASE_URL: z.string().url().optional(),
  /** Where the embedded PGlite database lives when DATABASE_URL is unset. @default "./data" */
  DATA_DIR: z.string().default("./data"),
  /** Redis URL for the cluster adapter, presence and rate limits. Unset: one node, in memory. */
  REDIS_URL: z.string().url().optional(),
  /** Which Redis adapter carries rooms across nodes (docs/cluster.md has the measurements). @default "sharded" */
  REDIS_ADAPTER: z.enum(["sharded", "classic"]).default("sharded"),
  /** Prefix of every Redis key and channel Ticks uses, so deployments can share a Redis. @default "ticks" */
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/).default("ticks"),
  /** A user whose node died is shown offline within this time. @default 30000 */
  PRESENCE_TTL_MS: int(300).default(30_000),
  /** How long a node's lease on a background job lasts without renewal. @default 15000 */
  LEADER_LEASE_MS: int(100).default(15_000),
  /** HS256 secret for handshake JWTs; at least 32 characters. */
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters").optional(),
  /** `jwt` or `dev` (trust `auth.userId`). @default "jwt" with JWT_SECRET, else "dev" */
  AUTH_MODE: z.enum(["jwt", "dev"]).optional(),
  NODE_ENV: z.string().default("development"),
  /** Days a message is kept; decimals allowed. @default 30 */
  MESSAGE_TTL_DAYS: z.coerce.number().positive().max(36500).default(30),
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
  /** Messages in one `message:backlog` page. @default 100 */
  BACKLOG_PAGE_SIZE: int(1, 1000).default(100),
  /** How long the server waits for a device's `message:new` / backlog receipt. @default 10000 */
  DELIVERY_ACK_TIMEOUT_MS: int(100).default(10_000),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = {
  port: number;
  host: string;
  database: { kind: "postgres"; url: string } | { kind: "pglite"; dataDir: string };
  redis: { url: string; adapter: "sharded" | "classic"; prefix: string } | null;
  presenceTtlMs: number;
  leaderLeaseMs: number;
  auth: { mode: "jwt"; secret: string } | { mode: "dev" };
  messageTtlMs: number;
  maxContentLength: number;
  expirySweepIntervalMs: number;
  backlogPageSize: number;
  redeliveryAfterMs: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
  deliveryAckTimeoutMs: number;
  logLevel: z.infer<typeof envSchema>["LOG_LEVEL"];
};

export class ConfigError extends Error {}

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
  const mode = e.AUTH_MODE ?? (e.JWT_SECRET ? "jwt" : "dev");
  if (mode === "dev" && e.NODE_ENV === "production") {
    throw new ConfigError("invalid configuration:\n  AUTH_MODE: dev is refused with NODE_ENV=production (set JWT_SECRET)");
  }
  if (mode === "jwt" && !e.JWT_SECRET) {
    throw new ConfigError("invalid configuration:\n  JWT_SECRET: required when AUTH_MODE=jwt");
  }
  return {
    port: e.PORT,
    host: e.HOST,
    database: e.DATABASE_URL ? { kind: "postgres", url: e.DATABASE_URL } : { kind: "pglite", dataDir: e.DATA_DIR },
    redis: e.REDIS_URL ? { url: e.REDIS_URL, adapter: e.REDIS_ADAPTER, prefix: e.REDIS_PREFIX } : null,
    presenceTtlMs: e.PRESENCE_TTL_MS,
    leaderLeaseMs: e.LEADER_LEASE_MS,
    auth: mode === "jwt" ? { mode, secret: e.JWT_SECRET! } : { mode },
    messageTtlMs: Math.round(e.MESSAGE_TTL_DAYS * DAY_MS),
    maxContentLength: e.MAX_CONTENT_LENGTH,
    expirySweepIntervalMs: e.EXPIRY_SWEEP_INTERVAL_MS,
    backlogPageSize: e.BACKLOG_PAGE_SIZE,
    redeliveryAfterMs: e.REDELIVERY_AFTER_MS,
    rateLimitPerSec: e.RATE_LIMIT_EVENTS_PER_SEC,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    deliveryAckTimeoutMs: e.DELIVERY_ACK_TIMEOUT_MS,
    logLevel: e.LOG_LEVEL,
  };
}
