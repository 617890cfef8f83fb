/**
 * Which partitions the reads of a page touch, on a database whose history fills a month
 * of day partitions (migrations/20261202130000_partitioned_messages.ts): EXPLAIN (ANALYZE,
 * BUFFERS) of the backlog page and the retry lookup as the hot-path connections run them
 * (prepared, one generic plan, sequential scans off), of a history page as the main pool
 * runs it (unnamed, planned with its values), and of a status:sync page.
 *
 *   node --import tsx bench/investigations/partition-explain.ts                    # 300 000 messages, dropped after
 *   node --import tsx bench/investigations/partition-explain.ts --messages 2000000
 */
import { Command } from "commander";
import { Client } from "pg";
import { createTestDatabase } from "../../test/helpers/database";
import { BACKLOG_PAGES } from "../../src/storage/messageReads";
import { FIND_STORED } from "../../src/storage/append/reads";
import { STATUS_PAGE } from "../../src/storage/SqlStatusStream";
import { MESSAGE_COLUMNS } from "../../src/storage/rows";
import type { Statement } from "../../src/storage/prepared";
import { migratedDatabase } from "../lib/ticks";
import { seedHistory } from "../lib/seed";

const HOT = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

async function explainPrepared(c: Client, stmt: Statement, types: string[], args: string): Promise<string[]> {
  await c.query(HOT);
  await c.query(`PREPARE x (${types.join(", ")}) AS ${stmt.text}`);
  try {
    for (let i = 0; i < 6; i++) await c.query(`EXECUTE x(${args})`);
    const { rows } = await c.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE x(${args})`);
    return rows.map((r) => (r as { "QUERY PLAN": string })["QUERY PLAN"]);
  } finally {
    await c.query("DEALLOCATE x; RESET ALL");
  }
}

async function explain(c: Client, sql: string, values: unknown[]): Promise<string[]> {
  const { rows } = await c.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql}`, values);
  return rows.map((r) => (r as { "QUERY PLAN": string })["QUERY PLAN"]);
}

async function main(): Promise<void> {
  const o = new Command()
    .option("--messages <n>", "messages to seed", Number, 300_000)
    .option("--conversations <n>", "direct conversations they spread over", Number, 5_000)
    .parse()
    .opts<{ messages: number; conversations: number }>();
  const db = await createTestDatabase();
  const c = new Client({ connectionString: db.url });
  try {
    await migratedDatabase(db.url);
    await seedHistory(db.url, { messages: o.messages, conversations: o.conversations, contentSize: 100, log: (l) => console.error(l) });
    await c.connect();
    // A status stream for one owner (its reads), as status-stream-explain.ts seeds it at scale.
    await c.query(`INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
      SELECT m.from_user_id, m.message_id, 'read', d.recipient_id, d.read_at, m.expires_at
      FROM messages m JOIN message_delivery d USING (message_id) WHERE m.from_user_id = 'hist000000' AND d.status = 'read'
      ORDER BY m.created_at`);
    await c.query("ANALYZE");
    const parts = await c.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'messages'::regclass`);
    console.log(`${o.messages} messages over ${o.conversations} conversations; messages has ${parts.rows[0].n} partitions (message_delivery the same)\n`);

    const { rows: [busy] } = await c.query(
      `SELECT d.recipient_id, m.conversation_id FROM message_delivery d JOIN messages m USING (message_id)
       WHERE d.status = 'sent' GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1`,
    );
    const lit = (v: string) => c.escapeLiteral(v);
    console.log(`-- message:backlog first page (BACKLOG_PAGES, one recipient ${busy.recipient_id}, 100 per page)`);
    console.log((await explainPrepared(c, BACKLOG_PAGES, ["text[]", "timestamptz", "int", "text[]"], `ARRAY[${lit(busy.recipient_id)}], now(), 100, ARRAY[]::text[]`)).join("\n"));

    const history = `SELECT ${MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1 AND m.expires_at > $2 ORDER BY m.seq DESC LIMIT $3`;
    console.log(`\n-- message:history, newest page of a conversation (limit 50)`);
    console.log((await explain(c, history, [busy.conversation_id, new Date(), 51])).join("\n"));
    const { rows: [mid] } = await c.query(`SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq LIMIT 1 OFFSET 10`, [busy.conversation_id]);
    const older = `SELECT ${MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1 AND m.expires_at > $2 AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4`;
    console.log(`\n-- message:history { beforeSeq: ${mid.seq} } (scrolling back to the oldest days)`);
    console.log((await explain(c, older, [busy.conversation_id, new Date(), mid.seq, 51])).join("\n"));

    const { rows: [old] } = await c.query(`SELECT from_user_id, client_msg_id FROM messages ORDER BY message_id LIMIT 1 OFFSET 100`);
    console.log(`\n-- a retry's lookup (FIND_STORED): message_idempotency, then the one partition of its message`);
    console.log((await explainPrepared(c, FIND_STORED, ["text[]", "text[]"], `ARRAY[${lit(old.from_user_id)}], ARRAY[${lit(old.client_msg_id)}]`)).join("\n"));

    console.log(`\n-- status:sync page (STATUS_PAGE, owner hist000000): status_stream only, no partition of messages`);
    console.log((await explainPrepared(c, STATUS_PAGE, ["text", "bigint", "timestamptz", "int"], `'hist000000', 0, now(), 501`)).join("\n"));
  } finally {
    await c.end().catch(() => undefined);
    await db.drop();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
