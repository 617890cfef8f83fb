/**
 * What a migration costs a live database: `npx knex migrate:latest` (the operators'
 * command, README "Database and migrations") on a copy of a seeded database, timed, with
 * the row counts before and after, while a second connection reads a message by id every
 * 50 ms (the longest read shows how long sends and reads would have waited) and a third
 * samples pg_locks every 100 ms (which locks the migration held, and for how long).
 *
 *   # a database at the schema before the migration: seed it from a checkout of that schema
 *   node --import tsx bench/investigations/migrate-lock.ts --template ticks_pb_expiry
 *
 * The copy (CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY) is dropped afterwards unless
 * --keep. Take the bench lock around it: `flock /work/bench.lock node --import tsx …`.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Command } from "commander";
import { Client } from "pg";
import { ADMIN_URL } from "../../test/helpers/database";
import { ROOT } from "../lib/procs";

type Counts = Record<string, number>;

async function counts(c: Client): Promise<Counts> {
  const out: Counts = {};
  for (const t of ["messages", "message_delivery", "status_stream", "message_idempotency"]) {
    if ((await c.query(`SELECT to_regclass($1) AS r`, [t])).rows[0].r === null) continue;
    out[t] = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${t}`)).rows[0]!.n);
  }
  return out;
}

async function main(): Promise<void> {
  const o = new Command()
    .requiredOption("--template <db>", "a seeded database at the old schema (copied; the copy is migrated)")
    .option("--keep", "keep the migrated copy")
    .option("--keep-as <db>", "keep the migrated copy under this name (e.g. a template for the history scenario)")
    .parse()
    .opts<{ template: string; keep?: boolean; keepAs?: string }>();
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const name = `${o.template}_mig_${randomBytes(3).toString("hex")}`;
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${o.template} STRATEGY FILE_COPY`);
  const u = new URL(ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const reader = new Client({ connectionString: url });
  const sampler = new Client({ connectionString: url });
  await reader.connect();
  await sampler.connect();
  try {
    const before = await counts(reader);
    const id = (await reader.query<{ id: string }>(`SELECT message_id AS id FROM messages ORDER BY message_id DESC LIMIT 1`)).rows[0]!.id;
    console.error(`${name}: before ${JSON.stringify(before)}`);

    let done = false;
    const reads: { at: number; ms: number }[] = [];
    const readLoop = (async () => {
      while (!done) {
        const t = performance.now();
        await reader.query(`SELECT content FROM messages WHERE message_id = $1`, [id]);
        reads.push({ at: t, ms: performance.now() - t });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    // Locks on the two tables (whatever their name or partition), held or awaited, by mode.
    const held = new Map<string, { first: number; last: number }>();
    let waitingMax = 0;
    const lockLoop = (async () => {
      while (!done) {
        const { rows } = await sampler.query<{ rel: string; mode: string; granted: boolean; n: string }>(
          `SELECT c.relname AS rel, l.mode, l.granted, count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
           WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.pid <> pg_backend_pid()
             AND c.relname ~ '^(messages|message_delivery)(_legacy)?$'
           GROUP BY 1, 2, 3`,
        );
        const now = performance.now();
        let waiting = 0;
        for (const r of rows) {
          if (!r.granted) waiting += Number(r.n);
          else if (r.mode === "AccessExclusiveLock") {
            const key = `${r.rel} ${r.mode}`;
            const h = held.get(key) ?? { first: now, last: now };
            h.last = now;
            held.set(key, h);
          }
        }
        waitingMax = Math.max(waitingMax, waiting);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const t0 = performance.now();
    const code = await new Promise<number>((resolve) => {
      const child = spawn("npx", ["knex", "migrate:latest"], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url }, stdio: "inherit" });
      child.on("exit", (c) => resolve(c ?? 1));
    });
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 300));
    done = true;
    await Promise.all([readLoop, lockLoop]);
    const after = await counts(reader);
    const worst = reads.reduce((w, r) => (r.ms > w.ms ? r : w), { at: 0, ms: 0 });
    console.log(`migrate:latest exited ${code} after ${seconds.toFixed(1)} s (includes npx/ts-node start-up)`);
    console.log(`rows before ${JSON.stringify(before)}`);
    console.log(`rows after  ${JSON.stringify(after)}`);
    console.log(`reads by id every 50 ms: ${reads.length}, longest ${(worst.ms / 1000).toFixed(1)} s starting ${((worst.at - t0) / 1000).toFixed(1)} s into the migration`);
    for (const [key, h] of held) console.log(`held ${key}: sampled from ${((h.first - t0) / 1000).toFixed(1)} s to ${((h.last - t0) / 1000).toFixed(1)} s`);
    console.log(`most lock requests waiting at once on these tables: ${waitingMax}`);
  } finally {
    await reader.end();
    await sampler.end();
    if (o.keepAs) {
      await admin.query(`ALTER DATABASE ${name} RENAME TO ${o.keepAs}`);
      console.error(`kept as ${o.keepAs}`);
    } else if (!o.keep) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    else console.error(`kept ${name}`);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
