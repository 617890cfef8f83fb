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

export async function migrateToLatest(db: Database): Promise<void> {
  await db.migrate.latest();
}
