/** A Ticks server on a fresh PostgreSQL database that is dropped afterwards. */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { createDatabase, migrateToLatest } from "../../src/storage/database";
import { ADMIN_URL, createTestDatabase, type TestDatabase } from "../../test/helpers/database";
import { DbProbe } from "./phase";
import { atExit, ROOT, startTicksProcess, type Target } from "./procs";

export { ADMIN_URL };

export type TicksUnderTest = { target: Target; db: TestDatabase; probe: DbProbe; stop(): Promise<void> };

/** The settings every benchmark server runs with: dev auth, no rate limit, quiet logs. */
export const BENCH_ENV = { AUTH_MODE: "dev", RATE_LIMIT_EVENTS_PER_SEC: "0", LOG_LEVEL: "warn" } as const;

/**
 * A fresh database, dropped by `drop()` — or, if the harness exits before that, by a
 * synchronous child process at exit.
 */
export async function benchDatabase(template?: string): Promise<TestDatabase> {
  const db = template ? await copyOf(template) : await createTestDatabase();
  const forget = atExit(() => {
    const script =
      `const { Client } = require("pg"); const c = new Client({ connectionString: process.argv[1] });` +
      `c.connect().then(() => c.query("DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)")).finally(() => c.end());`;
    execFileSync(process.execPath, ["-e", script, ADMIN_URL], { cwd: ROOT, stdio: "ignore", timeout: 30_000 });
  });
  return {
    ...db,
    drop: async () => {
      forget();
      await db.drop();
    },
  };
}

/**
 * A copy of a (seeded) database: a file copy, much faster than seeding again, and it leaves
 * the template as it was. FILE_COPY writes no WAL for the data (it checkpoints instead).
 */
async function copyOf(template: string): Promise<TestDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(template)) throw new Error(`template ${template}: not a plain database name`);
  const name = `${template}_copy_${randomBytes(4).toString("hex")}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template} STRATEGY FILE_COPY`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const drop = async () => {
    const c = new Client({ connectionString: ADMIN_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => c.end());
  };
  return { url: url.toString(), name, drop };
}

/**
 * `prepare` runs on the new database before the server starts (e.g. migrate and seed it);
 * `template`: the new database is a copy of that one.
 */
export async function startTicksOnFreshDb(
  env: Record<string, string> = {},
  nofile?: number,
  prepare?: (url: string) => Promise<void>,
  template?: string,
): Promise<TicksUnderTest> {
  const db = await benchDatabase(template);
  let target: Target;
  try {
    await prepare?.(db.url);
    target = await startTicksProcess({ ...BENCH_ENV, DATABASE_URL: db.url, ...env }, nofile);
  } catch (err) {
    await db.drop();
    throw err;
  }
  const probe = await DbProbe.open(ADMIN_URL, db.name);
  return {
    target,
    db,
    probe,
    stop: async () => {
      await target.stop();
      await probe.close().catch(() => {});
      await db.drop();
    },
  };
}

/** What the database holds: stored messages and stored delivery receipts (delivered or read). */
export async function storedCounts(url: string): Promise<{ messages: number; delivered: number }> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ messages: string; delivered: string }>(
      `SELECT (SELECT count(*) FROM messages) AS messages,
              (SELECT count(*) FROM message_delivery WHERE status <> 'sent') AS delivered`,
    );
    return { messages: Number(rows[0]!.messages), delivered: Number(rows[0]!.delivered) };
  } finally {
    await client.end();
  }
}

/** Brings a database's schema up to date with the project's migrations (as a server would at start). */
export async function migratedDatabase(url: string): Promise<void> {
  const db = createDatabase({ kind: "postgres", url });
  try {
    await migrateToLatest(db, "postgres");
  } finally {
    await db.destroy();
  }
}
