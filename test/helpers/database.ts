import { randomBytes } from "node:crypto";
import { Client } from "pg";

/** The server the tests create their databases on; CI and this machine: local, trust auth. */
export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export type TestDatabase = { url: string; name: string; drop(): Promise<void> };

async function admin<T>(work: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database for one suite; drop() removes it even with connections open. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `ticks_test_${randomBytes(6).toString("hex")}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** Whether a database of that name exists on the test server (e.g. after dropping one under a server). */
export async function databaseExists(name: string): Promise<boolean> {
  const { rows } = await admin((c) => c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]));
  return rows.length > 0;
}
