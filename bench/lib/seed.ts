/**
 * A realistic old history for a Ticks database: `messages` spread over `conversations`
 * direct conversations between `users` users, each message with its delivery row, written
 * straight into PostgreSQL with generate_series (no server involved), then VACUUM (FREEZE,
 * ANALYZE) and a CHECKPOINT, so what is measured next is the steady state of a big
 * database, not its loading.
 *
 * Loading is fast because the tables' secondary indexes and foreign keys are dropped
 * first and rebuilt afterwards (a sorted index build is much cheaper than millions of
 * single inserts). Whatever the migrations defined is read from the catalog and recreated
 * exactly, so a migration that adds an index or a constraint is seeded correctly too.
 *
 * The shape: users `hist000000`…, conversation i between two of them (each user in about
 * 5 conversations), messages interleaved over time (message g goes to conversation
 * g mod C, so every conversation has ~messages/C of them, seq 1…), alternating senders,
 * ids time-ordered like the server's uuid v7, created over the last 29 days (none
 * expired), about 2 % of each conversation's newest messages still `sent`, the rest `read`.
 */
import knex from "knex";
import { Client } from "pg";
import { DAY_MS, ensureDays } from "../../src/storage/partitions";

export type SeedOptions = { messages: number; conversations: number; contentSize: number; log?: (line: string) => void };
export type SeedResult = { messages: number; conversations: number; users: number; seconds: number; loadSeconds: number };

const BASE_TABLES = ["conversations", "conversation_members", "messages", "message_delivery"];
let TABLES = BASE_TABLES;

/**
 * On the partitioned schema (migrations/20261202130000_partitioned_messages.ts): the fresh
 * database's legacy partitions are empty, so they go, and every day of the history gets its
 * own partition, as a server that ran for a month has them; the idempotency keys are seeded
 * with their messages.
 */
async function preparePartitions(url: string, spanMs: number): Promise<boolean> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const partitioned = await c.query(`SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'messages'::regclass`);
    if (partitioned.rows.length === 0) return false;
    for (const table of ["messages_legacy", "message_delivery_legacy"]) {
      const exists = await c.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [table]);
      if (exists.rows[0].e && (await c.query(`SELECT NOT EXISTS (SELECT 1 FROM ${table}) AS empty`)).rows[0].empty) {
        await c.query(`DROP TABLE ${table}`);
      }
    }
  } finally {
    await c.end();
  }
  const db = knex({ client: "pg", connection: url });
  try {
    const now = Date.now();
    await ensureDays(db, now - spanMs - DAY_MS, now + DAY_MS);
  } finally {
    await db.destroy();
  }
  return true;
}

/** Indexes that back no constraint, and constraints other than NOT NULL/CHECK, on the seeded tables. */
async function droppables(c: Client): Promise<{ indexes: { name: string; def: string }[]; constraints: { table: string; name: string; def: string; type: string }[] }> {
  const indexes = await c.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
     FROM pg_index i WHERE i.indrelid = ANY($1::regclass[])
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)`,
    [TABLES],
  );
  // Foreign keys referencing or held by the seeded tables; then unique and primary keys.
  const constraints = await c.query<{ table: string; name: string; def: string; type: string }>(
    `SELECT k.conrelid::regclass::text AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS def, k.contype AS type
     FROM pg_constraint k
     WHERE k.contype IN ('f', 'u', 'p') AND (k.conrelid = ANY($1::regclass[]) OR k.confrelid = ANY($1::regclass[]))
     ORDER BY (k.contype = 'f') DESC`,
    [TABLES],
  );
  return { indexes: indexes.rows, constraints: constraints.rows };
}

export async function seedHistory(url: string, o: SeedOptions): Promise<SeedResult> {
  const log = o.log ?? (() => {});
  const users = Math.max(3, Math.round((o.conversations * 2) / 5));
  const partitioned = await preparePartitions(url, 29 * DAY_MS);
  TABLES = partitioned ? [...BASE_TABLES, "message_idempotency"] : BASE_TABLES;
  const c = new Client({ connectionString: url });
  await c.connect();
  const t0 = performance.now();
  try {
    await c.query("SET maintenance_work_mem = '256MB'");
    const { indexes, constraints } = await droppables(c);
    // Foreign keys first (they depend on the keys), then unique/primary keys, then indexes.
    for (const k of constraints) await c.query(`ALTER TABLE ${k.table} DROP CONSTRAINT ${k.name}`);
    for (const i of indexes) await c.query(`DROP INDEX ${i.name}`);

    const step = users; // conversation i: users a = i mod U and b = a + d, d ∈ {1, 998, 1995, …}
    await c.query(
      `INSERT INTO users (user_id, created_at)
       SELECT 'hist' || lpad(u::text, 6, '0'), now() - interval '30 days' FROM generate_series(0, $1::int - 1) AS u
       ON CONFLICT DO NOTHING`,
      [users],
    );
    await c.query(
      `CREATE TEMP TABLE seed_pairs AS
       SELECT i, gen_random_uuid() AS id,
         'hist' || lpad((i % $2::int)::text, 6, '0') AS a,
         'hist' || lpad(((i % $2::int + 1 + (i / $2::int) * 997) % $2::int)::text, 6, '0') AS b
       FROM generate_series(0, $1::int - 1) AS i`,
      [o.conversations, step],
    );
    const perConversation = Math.ceil(o.messages / o.conversations);
    await c.query(
      `INSERT INTO conversations (conversation_id, kind, direct_key, last_seq, created_at, last_message_at, created_by)
       SELECT id, 'direct', least(a, b) || ' ' || greatest(a, b), $1::int, now() - interval '29 days', now() - interval '1 hour', a
       FROM seed_pairs`,
      [perConversation],
    );
    await c.query(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       SELECT id, u, now() - interval '29 days' FROM seed_pairs, LATERAL (VALUES (a), (b)) AS m(u)`,
    );
    await c.query(`CREATE UNIQUE INDEX ON seed_pairs (i)`);
    await c.query("ANALYZE seed_pairs");
    log(`seed: ${o.conversations} conversations, ${users} users`);

    // Message g (0-based): conversation g mod C, seq g div C + 1, sent by a or b in turn,
    // at an even pace over 29 days; the id starts with its millisecond timestamp (uuid v7).
    const span = 29 * 24 * 3600 * 1000;
    const tLoad = performance.now();
    await c.query(
      `WITH g AS (
         SELECT g, p.id AS conversation_id, (g / $2::int) + 1 AS seq,
           CASE WHEN g / $2::int % 2 = 0 THEN p.a ELSE p.b END AS sender,
           CASE WHEN g / $2::int % 2 = 0 THEN p.b ELSE p.a END AS recipient,
           now() - interval '29 days' + (g::float8 * $4::float8 / $1::float8) * interval '1 millisecond' AS at
         FROM generate_series(0, $1::int - 1) AS g JOIN seed_pairs p ON p.i = g % $2::int
       ), m AS (
         INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
           created_at, expires_at)
         SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || substr(md5(g::text), 1, 3)
                 || '8' || substr(md5(g::text), 4, 15))::uuid,
           conversation_id, seq, sender, recipient, 'seed-' || g, repeat('h', $3::int), at, at + interval '30 days'
         FROM g
         RETURNING message_id, to_user_id, seq
       )
       INSERT INTO message_delivery (message_id, recipient_id, status, delivered_at, read_at)
       SELECT message_id, to_user_id,
         CASE WHEN seq > $5::int THEN 'sent' ELSE 'read' END,
         CASE WHEN seq > $5::int THEN NULL ELSE now() - interval '1 day' END,
         CASE WHEN seq > $5::int THEN NULL ELSE now() - interval '1 day' END
       FROM m`,
      [o.messages, o.conversations, o.contentSize, span, Math.floor(perConversation * 0.98)],
    );
    if (partitioned) {
      await c.query(`INSERT INTO message_idempotency (from_user_id, client_msg_id, message_id, expires_at)
        SELECT from_user_id, client_msg_id, message_id, expires_at FROM messages WHERE client_msg_id LIKE 'seed-%'`);
    }
    const loadSeconds = (performance.now() - tLoad) / 1000;
    log(`seed: ${o.messages} messages and delivery rows inserted in ${loadSeconds.toFixed(1)} s; rebuilding keys and indexes`);
    await c.query("DROP TABLE seed_pairs");

    for (const k of [...constraints].reverse()) await c.query(`ALTER TABLE ${k.table} ADD CONSTRAINT ${k.name} ${k.def}`);
    // A partitioned table's index reads back as `ON ONLY parent` (the parent alone): built on every partition here.
    for (const i of indexes) await c.query(i.def.replace(" ON ONLY ", " ON "));
    log(`seed: keys and indexes rebuilt at ${((performance.now() - t0) / 1000).toFixed(1)} s; VACUUM (FREEZE, ANALYZE), CHECKPOINT`);
    await c.query(`VACUUM (FREEZE, ANALYZE) ${TABLES.join(", ")}, users`);
    await c.query("CHECKPOINT");
    return { messages: o.messages, conversations: o.conversations, users, seconds: (performance.now() - t0) / 1000, loadSeconds };
  } finally {
    await c.end();
  }
}
