import { mkdirSync } from "node:fs";
import path from "node:path";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import type { Config } from "../config";
import { MigrationSource } from "./MigrationSource";

export type Database = Knex;

/** Knex settings for PostgreSQL (pg) or the embedded PGlite default; also the knexfile's. */
export function knexConfig(database: Config["database"]): Knex.Config {
  const migrations = { migrationSource: new MigrationSource() };
  if (database.kind === "postgres") {
    return { client: "pg", connection: database.url, pool: { min: 0, max: 10 }, migrations };
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

export function createDatabase(database: Config["database"]): Database {
  return knexFactory(knexConfig(database));
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
