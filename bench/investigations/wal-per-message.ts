/**
 * How much WAL one message's lifecycle writes (the plain append, then its delivered
 * receipt), by record type, read with pg_walinspect: batches of BATCH (default 100) into 50
 * direct conversations on a fresh database, BATCHES (default 50) of them after a warm-up of
 * 20, run serially from one connection with the hot path's settings. Backs "How much WAL a
 * message costs" in docs/benchmarks.md (issue 23). The server-wide WAL of the window is
 * printed too: when it is much larger than this database's records, something else wrote.
 *
 *   node --import tsx bench/investigations/wal-per-message.ts     # BATCH=10 BATCHES=200 for small batches
 */
import { Client } from "pg";
import { v7 as uuidv7 } from "uuid";
import { createTestDatabase } from "../../test/helpers/database";
import { migratedDatabase } from "../lib/ticks";
import { WRITE_PLAIN, plainValues } from "../../src/storage/append/writeStatement";
import { RECEIPT } from "../../src/storage/receipts";
import { createDirect } from "../../src/storage/append/write";
import { createDatabase } from "../../src/storage/database";
import { directKey } from "../../src/messaging/routing";
import type { BatchRow } from "../../src/storage/append/batchPlan";

async function main() {
  const db = await createTestDatabase();
  try {
    await migratedDatabase(db.url);
    const knex = createDatabase({ kind: "postgres", url: db.url });
    const pairs = Array.from({ length: 50 }, (_, i) => [`s${i}`, `r${i}`] as const);
    const now = new Date();
    const row = (i: number, p: readonly [string, string], seq: number): BatchRow => ({
      index: i, accept: true, conversationId: null, directKey: directKey(p[0], p[1]), to: p[1], content: "x".repeat(100),
      expiresAt: new Date(now.getTime() + 1e9), refId: null,
      req: { kind: "text", id: uuidv7(), from: p[0], clientMsgId: `c${seq}-${i}`, target: { to: p[1] }, content: "x", createdAt: new Date(), expiresAt: new Date(now.getTime() + 1e9), media: null } as never,
    });
    await createDirect(knex, pairs.map((p, i) => row(i, p, 0)));
    await knex.destroy();
    const c = new Client({ connectionString: db.url, options: "-c jit=off -c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off" });
    await c.connect();
    const oid = (await c.query("select oid from pg_database where datname = current_database()")).rows[0].oid;
    let seq = 1;
    const batch = Number(process.env.BATCH ?? 100), batches = Number(process.env.BATCHES ?? 50);
    // warm-up (first touches of pages after the database's creation checkpoint)
    const run = async (n: number) => {
      for (let b = 0; b < n; b++) {
        const rows = Array.from({ length: batch }, (_, i) => row(i, pairs[i % 50]!, seq++));
        await c.query({ name: "w", text: WRITE_PLAIN.text, values: plainValues(rows) });
        await c.query({ name: "r", text: RECEIPT.delivered.text, values: [rows.map((r) => r.to), rows.map((r) => r.req.id), rows.map(() => new Date().toISOString())] });
      }
    };
    await run(20);
    const lsn0 = (await c.query("select pg_current_wal_lsn() as l")).rows[0].l;
    await run(batches);
    const lsn1 = (await c.query("select pg_current_wal_lsn() as l")).rows[0].l;
    const msgs = batch * batches;
    const total = (await c.query("select pg_wal_lsn_diff($2, $1)::bigint as b", [lsn0, lsn1])).rows[0].b;
    console.log(`batch ${batch}: ${msgs} messages, WAL ${total} bytes server-wide = ${(total / msgs).toFixed(0)} B/msg (includes other sessions)`);
    // In this database (dropped with it): its functions read the server's whole WAL anyway.
    await c.query("CREATE EXTENSION pg_walinspect");
    const { rows } = await c.query(
      `select resource_manager, record_type, count(*) n, sum(record_length) bytes, sum(fpi_length) fpi,
              string_agg(distinct substring(block_ref from 'rel 1663/${oid}/([0-9]+)'), ',') rels
       from pg_get_wal_records_info($1, $2)
       where block_ref like '%rel 1663/${oid}/%' or (resource_manager = 'Transaction')
       group by 1, 2 order by bytes desc`, [lsn0, lsn1]);
    let sum = 0;
    for (const r of rows) { sum += Number(r.bytes); }
    console.log(`this database's records (+ all commits): ${sum} B = ${(sum / msgs).toFixed(0)} B/msg`);
    const names = new Map((await c.query("select pg_relation_filenode(oid)::text f, relname from pg_class where pg_relation_filenode(oid) is not null")).rows.map((r) => [r.f, r.relname]));
    for (const r of rows) console.log(`${r.resource_manager}/${r.record_type}: ${(r.n / msgs).toFixed(2)} rec/msg, ${(r.bytes / msgs).toFixed(0)} B/msg, fpi ${(r.fpi / msgs).toFixed(0)}  ${(r.rels ?? "").split(",").map((f: string) => names.get(f) ?? f).join(" ").slice(0, 150)}`);
    await c.end();
  } finally {
    await db.drop();
  }
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
