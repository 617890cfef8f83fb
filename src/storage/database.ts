import { mkdirSync } from "node:fs";
import path from "node:path";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import type { Config } from "../config";
import { throttledWarn, type Logger } from "../log";
import { MigrationSource } from "./MigrationSource";

export type Database = Knex;

/** Knex settings for PostgreSQL (pg) or the embedded PGlite default; also the knexfile's. */
export function knexConfig(database: Config["database"], log?: Logger): Knex.Config {
  const migrations = { migrationSource: new MigrationSource() };
  if (database.kind === "postgres") {
    const pg: Knex.Config = { ...pgPool(database, database.poolMax ?? 10), migrations };
    return log ? { ...pg, log: knexLog(log) } : pg;
  }
  const dir = path.resolve(database.dataDir, "pglite");
  mkdirSync(dir, { recursive: true });
  return {
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: "postgres",
    connection: { filename: dir } as Knex.StaticConnectionConfig,
    migrations,
  } as Knex.Config;
}

export function createDatabase(database: Config["database"], log?: Logger): Database {
  return knexFactory(knexConfig(database, log));
}

/**
 * The hot path's pool, on top of DATABASE_POOL_MAX (docs/scaling.md's budget): room for
 * every write lane's batch at once, so a lane whose batch waits (a lock, a slow commit)
 * does not leave the others queueing for a connection, plus these for receipts, backlog
 * pages and new users.
 */
export const HOT_PATH_SHARED_CONNECTIONS = 3;

/**
 * DATABASE_TIMEOUT_MS, on the client side: a network cut drops packets without a reset, and
 * a query on such a connection would wait for TCP to give up (many minutes) instead of
 * failing as UNAVAILABLE. A timed-out write may still commit once the network heals; the
 * client's retry with the same clientMsgId then finds it.
 */
function timeouts(database: { timeoutMs?: number }) {
  return database.timeoutMs ? { query_timeout: database.timeoutMs, connectionTimeoutMillis: database.timeoutMs, keepAlive: true } : {};
}

/** A pg pool of up to `max` connections to DATABASE_URL, under DATABASE_TIMEOUT_MS (see timeouts). */
function pgPool(database: { url: string; timeoutMs?: number }, max: number, options = ""): Knex.Config {
  return {
    client: "pg",
    // JIT never pays for Ticks' statements (key probes and short pages), and a plan costed
    // on missing statistics JIT-compiled every append (1.5 s each; docs/benchmarks.md).
    connection: { connectionString: database.url, ...timeouts(database), options: `-c jit=off ${options}`.trim() },
    pool: { min: 0, max },
    ...(database.timeoutMs ? { acquireConnectionTimeout: database.timeoutMs * 2 } : {}),
  };
}

/**
 * A second, small pool for the hot path's named statements (storage/prepared.ts: the
 * append, receipts, backlog pages, new users). Its connections keep one generic plan per
 * statement (planned once, not at every call: ~0.7 ms saved per append batch) with
 * sequential scans, hash and merge joins off, so that plan is made of nested loops over
 * the batch's rows and index probes, whatever the table sizes were when it was made. Left to the planner, a plan cached on an empty database kept
 * scanning whole tables long after they had grown. Every one of these statements finds
 * its rows by key; nothing else runs on these connections. PGlite has one connection: the
 * same database serves both.
 */
export function createHotPathDatabase(database: Config["database"], main: Database, appendLanes: number, log?: Logger): Database {
  if (database.kind !== "postgres") return main;
  const options = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off";
  const config = pgPool(database, appendLanes + HOT_PATH_SHARED_CONNECTIONS, options);
  return knexFactory(log ? { ...config, log: knexLog(log) } : config);
}

/**
 * Knex writes its own warnings (one per failed connection attempt while the database is
 * down) straight to stdout; through pino, throttled, they keep the log one JSON per line.
 */
function knexLog(log: Logger): Knex.Config["log"] {
  const warn = throttledWarn(log);
  return {
    warn: (message: unknown) => warn({ knex: String(message).split("\n")[0] }, "knex warning"),
    error: (message: unknown) => log.error({ knex: String(message) }, "knex error"),
    deprecate: (method: unknown, alternative: unknown) => log.warn({ method, alternative }, "knex deprecation"),
    debug: () => {},
  };
}

/** Arbitrary, fixed: the advisory lock key that serialises migrations across nodes. */
const MIGRATION_LOCK_KEY = 7_346_250_011;

/**
 * Brings the schema up to date. Every node of a cluster does this at start, all at once
 * under PM2: an advisory lock makes them take turns (Knex's own lock table would make the
 * losers fail instead of wait). PGlite is one process with one connection: no lock.
 */
export async function migrateToLatest(db: Database, kind: Config["database"]["kind"]): Promise<void> {
  if (kind === "pglite") {
    await db.migrate.latest();
    return;
  }
  await db.transaction(async (trx) => {
    await trx.raw("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK_KEY]);
    await db.migrate.latest();
  });
}
