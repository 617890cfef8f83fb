import type { Knex } from "knex";
import { Client } from "pg";
import { createDatabase, createHotPathDatabase, migrateToLatest } from "../../src/storage/database";
import { createTestDatabase, type TestDatabase } from "./database";

export type MigratedDatabase = {
  readonly db: TestDatabase;
  /** The main pool, as main.ts makes it. */
  readonly main: Knex;
  /** The hot path's pool (named statements, one generic plan), room for `lanes` append batches. */
  readonly hot: Knex;
  /** A connection of the test's own, outside both pools. */
  readonly pg: Client;
};

/**
 * For a store-level suite: a fresh PostgreSQL database, migrated, with the two pools the
 * server gives its store, closed and dropped at the end. Call it inside `describe`; it
 * registers the hooks there, and the properties are there once `before` has run.
 */
export function useMigratedDatabase(lanes = 1): MigratedDatabase {
  let state: { db: TestDatabase; main: Knex; hot: Knex; pg: Client } | undefined;
  const ready = () => {
    if (!state) throw new Error("useMigratedDatabase: only there once the suite's before hook ran");
    return state;
  };
  before(async () => {
    const db = await createTestDatabase();
    const main = createDatabase({ kind: "postgres", url: db.url });
    await migrateToLatest(main, "postgres");
    const pg = new Client({ connectionString: db.url });
    await pg.connect();
    state = { db, main, hot: createHotPathDatabase({ kind: "postgres", url: db.url }, main, lanes), pg };
  });
  after(async () => {
    await state?.pg.end();
    await state?.hot.destroy();
    await state?.main.destroy();
    await state?.db.drop();
  });
  return {
    get db() {
      return ready().db;
    },
    get main() {
      return ready().main;
    },
    get hot() {
      return ready().hot;
    },
    get pg() {
      return ready().pg;
    },
  };
}
