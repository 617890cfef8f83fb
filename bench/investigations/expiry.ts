/**
 * What expiry costs on a big database: a Ticks server (startTicks, as `npm start` builds
 * it) on a copy of a seeded database, whose expiry sweep is called back to back
 * (`app.sweeper.sweepNow()`, the round the server runs every EXPIRY_SWEEP_INTERVAL_MS, with
 * the leader lock and the media sweep) until a round deletes nothing. Measured: wall time
 * and each round's, WAL written (pg_current_wal_lsn before and after, less the server's
 * background rate measured just before), table and index sizes before and after
 * (pg_total_relation_size), dead tuples and vacuum state; with --vacuum also the VACUUM that
 * would make the freed space reusable (autovacuum is off on this project's machines).
 *
 *   # a database with 5 M expired messages (and 500 000 live ones): bench/investigations/seed.ts
 *   node --import tsx bench/investigations/expiry.ts --template ticks_pb_expiry --vacuum
 *   node --import tsx bench/investigations/expiry.ts --url postgres://…/db   # sweeps that database itself
 *
 * The copy (CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY) is dropped afterwards unless
 * --keep. The server migrates the copy at start, as a deployed server would. Take the
 * bench lock around it: `flock /work/bench.lock node --import tsx …`.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { startTicks } from "../../src/main";
import { ADMIN_URL } from "../../test/helpers/database";
import { ROOT } from "../lib/procs";
import { renderSection, type Section } from "../lib/table";

/** The tables the sweep deletes from (message_idempotency: on the partitioned schema). */
let SWEPT = ["messages", "message_delivery", "status_stream", "push_outbox", "message_idempotency"];

type Sizes = Record<string, { total: number; heap: number; indexes: number; live: number; dead: number; lastVacuum: string | null; lastAutovacuum: string | null }>;

/** Each swept table's sizes and vacuum state; a partitioned table counts its partitions. */
async function sizes(c: Client): Promise<Sizes> {
  const { rows } = await c.query<{ name: string; total: string; heap: string; indexes: string; live: string; dead: string; lv: Date | null; lav: Date | null }>(
    `SELECT t.name,
       sum(pg_total_relation_size(r.oid)) AS total, sum(pg_relation_size(r.oid)) AS heap, sum(pg_indexes_size(r.oid)) AS indexes,
       sum(s.n_live_tup) AS live, sum(s.n_dead_tup) AS dead, max(s.last_vacuum) AS lv, max(s.last_autovacuum) AS lav
     FROM unnest($1::text[]) AS t(name)
     JOIN pg_class p ON p.relname = t.name AND p.relnamespace = 'public'::regnamespace
     JOIN pg_class r ON r.oid = p.oid OR r.oid IN (SELECT relid FROM pg_partition_tree(p.oid) WHERE isleaf)
     LEFT JOIN pg_stat_user_tables s ON s.relid = r.oid
     GROUP BY t.name`,
    [SWEPT],
  );
  return Object.fromEntries(
    rows.map((r) => [
      r.name,
      { total: Number(r.total), heap: Number(r.heap), indexes: Number(r.indexes), live: Number(r.live ?? 0), dead: Number(r.dead ?? 0), lastVacuum: r.lv?.toISOString() ?? null, lastAutovacuum: r.lav?.toISOString() ?? null },
    ]),
  );
}

async function counts(c: Client): Promise<Record<string, number>> {
  const keys = SWEPT.includes("message_idempotency") ? `, (SELECT count(*) FROM message_idempotency) AS keys` : "";
  const { rows } = await c.query(
    `SELECT (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM messages WHERE expires_at <= now()) AS expired,
       (SELECT count(*) FROM message_delivery) AS delivery, (SELECT count(*) FROM status_stream) AS stream${keys}`,
  );
  return Object.fromEntries(Object.entries(rows[0] as Record<string, string>).map(([k, v]) => [k, Number(v)]));
}

const lsn = async (c: Client): Promise<string> => (await c.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l;
const walBetween = async (c: Client, a: string, b: string): Promise<number> =>
  Number((await c.query<{ d: string }>("SELECT pg_wal_lsn_diff($2, $1) AS d", [a, b])).rows[0]!.d);
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

async function main(): Promise<void> {
  const o = new Command()
    .option("--template <db>", "a seeded database to copy (the copy is swept)")
    .option("--url <url>", "sweep this database itself instead")
    .option("--keep", "keep the copy")
    .option("--vacuum", "then VACUUM the swept tables, timed")
    .option("--background-s <s>", "seconds the server's background WAL rate is measured before the sweep", Number, 20)
    .parse()
    .opts<{ template?: string; url?: string; keep?: boolean; vacuum?: boolean; backgroundS: number }>();
  if (!o.template === !o.url) throw new Error("give --template <db> or --url <url>");
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  let url = o.url!;
  let copy: string | null = null;
  if (o.template) {
    copy = `${o.template}_run_${randomBytes(3).toString("hex")}`;
    const t = performance.now();
    await admin.query(`CREATE DATABASE ${copy} TEMPLATE ${o.template} STRATEGY FILE_COPY`);
    console.error(`copied ${o.template} to ${copy} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    const u = new URL(ADMIN_URL);
    u.pathname = `/${copy}`;
    url = u.toString();
  }
  const db = new Client({ connectionString: url });
  await db.connect();
  SWEPT = (await db.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, [SWEPT])).rows.map((r) => r.t);
  const env = { DATABASE_URL: url, PORT: "0", HOST: "127.0.0.1", AUTH_MODE: "dev", LOG_LEVEL: "warn", EXPIRY_SWEEP_INTERVAL_MS: "86400000", DATABASE_TIMEOUT_MS: "600000" };
  const ticks = await startTicks(loadConfig(env));
  try {
    const before = { sizes: await sizes(db), counts: await counts(db) };
    console.error(`before: ${JSON.stringify(before.counts)}`);
    await db.query("CHECKPOINT");
    const bg0 = await lsn(db);
    await new Promise((r) => setTimeout(r, o.backgroundS * 1000));
    const backgroundBytesPerS = (await walBetween(db, bg0, await lsn(db))) / o.backgroundS;
    const load = os.loadavg();
    const wal0 = await lsn(db);
    const t0 = performance.now();
    const rounds: { ms: number; deleted: number }[] = [];
    // A round counts messages only; the stream's rows and the idempotency keys may need more
    // rounds than the messages (each table gets up to 100 batches of 1 000 a round).
    const leftover = async () =>
      (
        await db.query<{ left: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM messages WHERE expires_at <= now())
             OR EXISTS (SELECT 1 FROM status_stream WHERE expires_at <= now())
             ${SWEPT.includes("message_idempotency") ? "OR EXISTS (SELECT 1 FROM message_idempotency WHERE expires_at <= now())" : ""} AS left`,
        )
      ).rows[0]!.left;
    for (;;) {
      const r0 = performance.now();
      const deleted = await ticks.sweeper.sweepNow();
      rounds.push({ ms: performance.now() - r0, deleted });
      if (rounds.length % 10 === 0) console.error(`round ${rounds.length}: ${deleted} deleted, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      if (deleted === 0 && !(await leftover())) break;
    }
    const seconds = (performance.now() - t0) / 1000;
    const walBytes = await walBetween(db, wal0, await lsn(db));
    const after = { sizes: await sizes(db), counts: await counts(db) };
    let vacuum: { seconds: number; walBytes: number; sizes: Sizes } | null = null;
    if (o.vacuum) {
      const v0 = await lsn(db);
      const tv = performance.now();
      await db.query(`VACUUM ${SWEPT.join(", ")}`);
      vacuum = { seconds: (performance.now() - tv) / 1000, walBytes: await walBetween(db, v0, await lsn(db)), sizes: await sizes(db) };
    }
    const sorted = rounds.map((r) => r.ms).sort((a, b) => a - b);
    const deleted = rounds.reduce((s, r) => s + r.deleted, 0);
    const section: Section = {
      title: `expiry: ${(before.counts.expired - after.counts.expired).toLocaleString("en-US")} expired messages (the rounds counted ${deleted.toLocaleString("en-US")}; entries go with their message) swept by ${rounds.length} back-to-back sweep rounds, until no expired row was left`,
      columns: ["before", "after sweep", ...(vacuum ? ["after VACUUM"] : [])],
      rows: [
        ...SWEPT.flatMap((t) => [
          { label: `${t}: total MB (heap + indexes + toast)`, cells: [mb(before.sizes[t]!.total), mb(after.sizes[t]!.total), ...(vacuum ? [mb(vacuum.sizes[t]!.total)] : [])] },
          { label: `${t}: indexes MB`, cells: [mb(before.sizes[t]!.indexes), mb(after.sizes[t]!.indexes), ...(vacuum ? [mb(vacuum.sizes[t]!.indexes)] : [])] },
          { label: `${t}: dead tuples`, cells: [String(before.sizes[t]!.dead), String(after.sizes[t]!.dead), ...(vacuum ? [String(vacuum.sizes[t]!.dead)] : [])] },
        ]),
      ],
      notes: [
        `sweep: ${seconds.toFixed(1)} s wall (${(rounds.reduce((t, r) => t + r.ms, 0) / 1000).toFixed(1)} s in the rounds), rounds median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms`,
        `WAL: ${mb(walBytes)} MB during the sweep (server-wide; background ${mb(backgroundBytesPerS)} MB/s before it, so about ${mb(Math.max(0, walBytes - backgroundBytesPerS * seconds))} MB its own)`,
        vacuum ? `VACUUM afterwards: ${vacuum.seconds.toFixed(1)} s, ${mb(vacuum.walBytes)} MB WAL (space reusable, files not smaller)` : "no VACUUM (--vacuum)",
        `rows before: ${JSON.stringify(before.counts)}; after: ${JSON.stringify(after.counts)}`,
        `load average at the start ${load.map((l) => l.toFixed(2)).join(" ")}`,
      ],
    };
    console.log(renderSection(section));
    const out = path.join(ROOT, "bench/results", `${new Date().toISOString().replace(/[:.]/g, "-")}-expiry.json`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify({ template: o.template ?? null, seconds, walBytes, backgroundBytesPerS, rounds, before, after, vacuum, load }, null, 2));
    console.error(`results: ${out}`);
  } finally {
    await ticks.stop();
    await db.end();
    if (copy && !o.keep) await admin.query(`DROP DATABASE IF EXISTS ${copy} WITH (FORCE)`);
    else if (copy) console.error(`kept ${copy}`);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
