/**
 * EXPLAIN (ANALYZE, BUFFERS) of a `status:sync` page (storage/SqlStatusStream.ts STATUS_PAGE)
 * on a database of millions of messages, as the server runs it: the same SQL text, prepared,
 * one generic plan (plan_cache_mode = force_generic_plan, as the hot-path connections do).
 *
 *   node --import tsx bench/investigations/status-stream-explain.ts                      # seeds 5 M messages, dropped after
 *   node --import tsx bench/investigations/status-stream-explain.ts --messages 10000000
 *
 * Seeding is SQL only, no server: bench/lib/seed.ts writes the messages and their delivery
 * rows with generate_series (each message read or, for the newest 2 %, still sent); then
 * every read becomes the two stream rows a real read writes (one in the sender's stream,
 * one in the reader's own), in time order, with the primary key built after the load.
 */
import { Command } from "commander";
import { Client } from "pg";
import { createTestDatabase } from "../../test/helpers/database";
import { STATUS_PAGE } from "../../src/storage/SqlStatusStream";
import { migratedDatabase } from "../lib/ticks";
import { seedHistory } from "../lib/seed";

async function seedStream(c: Client): Promise<number> {
  await c.query("SET maintenance_work_mem = '256MB'");
  await c.query("ALTER TABLE status_stream DROP CONSTRAINT status_stream_pkey");
  await c.query(
    `INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
     SELECT owner, message_id, 'read', recipient_id, read_at, expires_at FROM (
       SELECT m.from_user_id AS owner, m.message_id, d.recipient_id, d.read_at, m.expires_at, m.created_at, 0 AS k
       FROM message_delivery d JOIN messages m ON m.message_id = d.message_id WHERE d.status = 'read'
       UNION ALL
       SELECT d.recipient_id, m.message_id, d.recipient_id, d.read_at, m.expires_at, m.created_at, 1
       FROM message_delivery d JOIN messages m ON m.message_id = d.message_id WHERE d.status = 'read'
     ) r ORDER BY created_at, k`,
  );
  await c.query("ALTER TABLE status_stream ADD PRIMARY KEY (owner_id, pos)");
  await c.query("VACUUM (FREEZE, ANALYZE) status_stream");
  await c.query("CHECKPOINT");
  return Number((await c.query("SELECT count(*) AS n FROM status_stream")).rows[0].n);
}

async function explainPage(c: Client, owner: string, after: string, limit: number): Promise<string[]> {
  await c.query("SET plan_cache_mode = force_generic_plan");
  await c.query(`PREPARE page_x (text, bigint, timestamptz, int) AS ${STATUS_PAGE.text}`);
  try {
    const args = `${c.escapeLiteral(owner)}, ${after}, now(), ${limit}`;
    // A generic plan is made after the first executions: warm it, then look.
    for (let i = 0; i < 6; i++) await c.query(`EXECUTE page_x(${args})`);
    const { rows } = await c.query(`EXPLAIN (ANALYZE, BUFFERS) EXECUTE page_x(${args})`);
    return rows.map((r) => (r as { "QUERY PLAN": string })["QUERY PLAN"]);
  } finally {
    await c.query("DEALLOCATE page_x");
  }
}

async function main(): Promise<void> {
  const o = new Command()
    .option("--messages <n>", "messages to seed", Number, 5_000_000)
    .option("--conversations <n>", "direct conversations they spread over", Number, 50_000)
    .option("--keep", "keep the database (its URL is printed)")
    .parse()
    .opts<{ messages: number; conversations: number; keep?: boolean }>();
  const db = await createTestDatabase();
  const c = new Client({ connectionString: db.url });
  try {
    await migratedDatabase(db.url);
    const seeded = await seedHistory(db.url, { messages: o.messages, conversations: o.conversations, contentSize: 100, log: (l) => console.error(l) });
    await c.connect();
    const t0 = performance.now();
    const streamRows = await seedStream(c);
    console.log(`seeded: ${seeded.messages} messages, ${seeded.conversations} conversations, ${seeded.users} users; ` +
      `${streamRows} status stream rows in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const size = await c.query(`SELECT pg_size_pretty(pg_total_relation_size('messages')) AS messages,
      pg_size_pretty(pg_total_relation_size('status_stream')) AS stream, pg_size_pretty(pg_relation_size('status_stream_pkey')) AS pkey`);
    console.log(`sizes: ${JSON.stringify(size.rows[0])}`);
    // The user with the longest stream; a page from its start, and one from the middle.
    const busiest = (await c.query(`SELECT owner_id, count(*)::int AS n FROM status_stream WHERE owner_id = 'hist000000' GROUP BY 1`)).rows[0] as { owner_id: string; n: number };
    const mid = (await c.query(`SELECT pos::text AS pos FROM status_stream WHERE owner_id = $1 ORDER BY pos OFFSET $2 LIMIT 1`, [busiest.owner_id, Math.floor(busiest.n / 2)])).rows[0].pos as string;
    console.log(`\nowner ${busiest.owner_id}: ${busiest.n} changes in the stream\n`);
    console.log(`-- status:sync { limit: 500 } (from the start; LIMIT 501 tells hasMore)`);
    console.log((await explainPage(c, busiest.owner_id, "0", 501)).join("\n"));
    console.log(`\n-- status:sync { after: <cursor of position ${mid}>, limit: 500 } (mid-stream)`);
    console.log((await explainPage(c, busiest.owner_id, mid, 501)).join("\n"));
    console.log(`\n-- status:sync { after: <the newest cursor> } (caught up: the usual call after sync:complete)`);
    const last = (await c.query(`SELECT max(pos)::text AS pos FROM status_stream WHERE owner_id = $1`, [busiest.owner_id])).rows[0].pos as string;
    console.log((await explainPage(c, busiest.owner_id, last, 501)).join("\n"));
  } finally {
    await c.end().catch(() => undefined);
    if (o.keep) console.log(`kept: ${db.url}`);
    else await db.drop();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
