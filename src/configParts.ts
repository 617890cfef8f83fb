/**
 * Parts of the configuration that config.ts (the only reader of process.env) composes:
 * how a setting is refused, and where PostgreSQL and Redis are.
 */

/** A setting config.ts refuses; main.ts prints its message and exits with EX_CONFIG. */
export class ConfigError extends Error {}

export const refuse = (variable: string, message: string): never => {
  throw new ConfigError(`invalid configuration:\n  ${variable}: ${message}`);
};

/**
 * PostgreSQL, or the embedded PGlite. Without `poolMax` / `timeoutMs` (the Knex CLI,
 * scripts): 10 connections and no timeout.
 */
export type DatabaseConfig =
  | { kind: "postgres"; url: string; poolMax?: number; timeoutMs?: number }
  | { kind: "pglite"; dataDir: string };

export function databaseConfig(e: {
  DATABASE_URL?: string;
  DATA_DIR: string;
  DATABASE_POOL_MAX: number;
  DATABASE_TIMEOUT_MS: number;
}): DatabaseConfig {
  return e.DATABASE_URL
    ? { kind: "postgres", url: e.DATABASE_URL, poolMax: e.DATABASE_POOL_MAX, timeoutMs: e.DATABASE_TIMEOUT_MS }
    : { kind: "pglite", dataDir: e.DATA_DIR };
}

/** Where Redis is: one server (REDIS_URL) or the seeds of a Redis Cluster (REDIS_CLUSTER_NODES). */
export type RedisTarget = { kind: "single"; url: string } | { kind: "cluster"; nodes: { host: string; port: number }[] };
export type RedisConfig = { target: RedisTarget; adapter: "sharded" | "classic"; prefix: string };

/**
 * REDIS_URL or REDIS_CLUSTER_NODES, never both: a cluster must never be mistaken for one
 * server, nor the other way round. The sharded adapter is refused with a cluster: it needs
 * sharded subscriptions per master, which its README says ioredis's cluster client does
 * not give it (docs/scaling.md).
 */
export function redisConfig(
  url: string | undefined,
  clusterNodes: string | undefined,
  adapter: "sharded" | "classic" | undefined,
  prefix: string,
): RedisConfig | null {
  if (url && clusterNodes) refuse("REDIS_CLUSTER_NODES", "cannot be combined with REDIS_URL: set one (a single Redis) or the other (a Redis Cluster)");
  if (clusterNodes) {
    if (adapter === "sharded") refuse("REDIS_ADAPTER", "sharded is not available with REDIS_CLUSTER_NODES; leave it unset or set classic");
    return { target: { kind: "cluster", nodes: parseClusterNodes(clusterNodes) }, adapter: "classic", prefix };
  }
  if (url) return { target: { kind: "single", url }, adapter: adapter ?? "sharded", prefix };
  return null;
}

/** `host:port,host:port`; a host may be a name, an IPv4 address or a bracketed IPv6 one. */
export function parseClusterNodes(list: string): { host: string; port: number }[] {
  const seeds = list.split(",").map((s) => s.trim());
  return seeds.map((seed) => {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(seed);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) {
      return refuse("REDIS_CLUSTER_NODES", `"${seed}" is not host:port (expected e.g. redis-1:6379,redis-2:6379)`);
    }
    return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
  });
}

/** `*`, or what `new URL(x).origin` gives back unchanged: scheme, host and port only (CORS_ORIGINS). */
export function isOrigin(value: string): boolean {
  if (value === "*") return true;
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === value;
  } catch {
    return false;
  }
}
