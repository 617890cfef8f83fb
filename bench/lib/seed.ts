/**
 * A realistic old history for a Ticks database, written straight into PostgreSQL with
 * INSERT … SELECT generate_series (no server, no row-by-row round trips), then VACUUM
 * (FREEZE, ANALYZE) and a CHECKPOINT, so what is measured next is the steady state of a big
 * database, not its loading.
 *
 * Loading is fast because the tables' secondary indexes and keys are dropped first and
 * rebuilt afterwards (a sorted index build is much cheaper than millions of single
 * inserts). Whatever the migrations defined is read from the catalog and recreated
 * exactly, so a migration that adds an index or a constraint is seeded correctly too.
 *
 * The shape (docs/benchmarks.md, "The seed"):
 * - `users` users `<prefix>000000`…, about 2/5 as many as conversations; one pushkey per 4.
 * - `conversations`, of which `groupShare` are groups of `groupSize` members (the first
 *   one created it and is its admin), the rest direct conversations between two users.
 * - `messages` interleaved over time: message g goes to conversation g mod C (seq g div C + 1),
 *   its members sending in turn, at an even pace from `fromDaysAgo` to `toDaysAgo` days
 *   ago, expiring `ttlDays` after; ids time-ordered like the server's uuid v7.
 *   Every 20th seq is a reaction to the message before it (which carries it in
 *   `reactions`), every 50th (25, 75, …) an edit of the one before it (`edited_at` set).
 * - one delivery row per message and member other than its sender (98 % `read`, the newest
 *   2 % of each conversation `sent`), in time order (delivery_id follows it, as live).
 * - for every `streamEvery`-th seq that was read (1, 11, 21, … for 10), its status stream rows: the sender's
 *   `delivered` and `read` by each recipient, and each recipient's own `read`.
 *
 * On the partitioned schema (bench/lib/seedPartitions.ts) the seeded days get their day
 * partitions first, and `message_idempotency` its rows.
 *
 * `prefix` names the users and clientMsgIds, so two seeds (e.g. an expired one and a live
 * one) can go into the same database.
 */
import { Client } from "pg";
import { ensureDayPartitions, tablesWithRows, isPartitioned } from "./seedPartitions";

export type SeedOptions = {
  messages: number;
  conversations: number;
  contentSize: number;
  /** Share of the conversations that are groups (default 0.1). */
  groupShare?: number;
  /** Members of each group (default 8). */
  groupSize?: number;
  /** The oldest message's age in days (default 29), the newest's (default 0), and their TTL (default 30). */
  fromDaysAgo?: number;
  toDaysAgo?: number;
  ttlDays?: number;
  /** Every n-th seq that was read has its status stream rows (default 10; 0: none). */
  streamEvery?: number;
  prefix?: string;
  log?: (line: string) => void;
};
export type SeedResult = {
  messages: number;
  conversations: number;
  groups: number;
  users: number;
  deliveryRows: number;
  streamRows: number;
  seconds: number;
  loadSeconds: number;
};

const TABLES = ["users", "conversations", "conversation_members", "messages", "message_delivery", "status_stream", "pushkeys", "message_idempotency"];

/**
 * Indexes that back no constraint, and constraints other than NOT NULL/CHECK, on the seeded
 * tables (those that exist) and their partitions. A partition's index or key attached to its
 * parent's goes and comes back with the parent's.
 */
async function droppables(c: Client): Promise<{ tables: string[]; indexes: { name: string; def: string }[]; constraints: { table: string; name: string; def: string; type: string }[] }> {
  const tables = (await c.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, [TABLES])).rows.map((r) => r.t);
  const rels = `(SELECT relid FROM unnest($1::regclass[]) AS t(r), pg_partition_tree(t.r))`;
  const indexes = await c.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
     FROM pg_index i WHERE i.indrelid IN ${rels}
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
       AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)`,
    [tables],
  );
  // Foreign keys referencing or held by the seeded tables; then unique and primary keys.
  const constraints = await c.query<{ table: string; name: string; def: string; type: string }>(
    `SELECT k.conrelid::regclass::text AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS def, k.contype AS type
     FROM pg_constraint k
     WHERE k.contype IN ('f', 'u', 'p') AND k.conparentid = 0
       AND (k.conrelid IN ${rels} OR k.confrelid IN ${rels})
     ORDER BY (k.contype = 'f') DESC`,
    [tables],
  );
  // A partitioned index's definition reads "ON ONLY parent": built that way it would not cover the partitions.
  return { tables, indexes: indexes.rows.map((i) => ({ ...i, def: i.def.replace(" ON ONLY ", " ON ") })), constraints: constraints.rows };
}

/** The seed's conversations and their members, in temp tables the message insert joins. */
async function seedConversations(c: Client, o: Required<Omit<SeedOptions, "log">>, users: number): Promise<number> {
  const groups = Math.round(o.conversations * o.groupShare);
  const directs = o.conversations - groups;
  const user = (expr: string) => `'${o.prefix}' || lpad((${expr})::text, 6, '0')`;
  await c.query(
    `INSERT INTO users (user_id, created_at)
     SELECT ${user("u")}, now() - make_interval(days => $2::int + 1) FROM generate_series(0, $1::int - 1) AS u
     ON CONFLICT DO NOTHING`,
    [users, Math.ceil(o.fromDaysAgo)],
  );
  await c.query(
    `INSERT INTO pushkeys (pushkey, user_id, app_id, device_id, registered_at)
     SELECT 'seedkey-' || ${user("u")}, ${user("u")}, 'com.example.ticks', 'phone', now() - interval '1 day'
     FROM generate_series(0, $1::int - 1, 4) AS u ON CONFLICT DO NOTHING`,
    [users],
  );
  // Conversation i < directs: users a = i mod U and b = a + 1 + (i div U)·997 (mod U), each
  // user in about five of them. Group i: `groupSize` users spread evenly over the directory.
  await c.query(
    `CREATE TEMP TABLE seed_conv AS
     SELECT i, gen_random_uuid() AS id, i >= $2::int AS is_group,
       CASE WHEN i >= $2::int THEN $3::int ELSE 2 END AS n,
       CASE WHEN i < $4::int THEN (($4::int - 1 - i) / $1::int) + 1 ELSE 0 END AS last_seq
     FROM generate_series(0, $1::int - 1) AS i`,
    [o.conversations, directs, o.groupSize, o.messages],
  );
  await c.query(
    `CREATE TEMP TABLE seed_members AS
     SELECT s.i, s.id, k, CASE WHEN s.is_group THEN ${user(`(s.i + k * ($1::int / $2::int)) % $1::int`)}
       WHEN k = 0 THEN ${user("s.i % $1::int")}
       ELSE ${user("(s.i % $1::int + 1 + (s.i / $1::int) * 997) % $1::int")} END AS user_id
     FROM seed_conv s, LATERAL generate_series(0, s.n - 1) AS k`,
    [users, o.groupSize],
  );
  await c.query(`CREATE UNIQUE INDEX ON seed_conv (i)`);
  await c.query(`CREATE UNIQUE INDEX ON seed_members (i, k)`);
  await c.query("ANALYZE seed_conv; ANALYZE seed_members");
  const created = `now() - make_interval(days => $1::int + 1)`;
  await c.query(
    `INSERT INTO conversations (conversation_id, kind, direct_key, title, last_seq, created_at, last_message_at, created_by)
     SELECT s.id, CASE WHEN s.is_group THEN 'group' ELSE 'direct' END,
       CASE WHEN s.is_group THEN NULL ELSE least(a.user_id, b.user_id) || ' ' || greatest(a.user_id, b.user_id) END,
       CASE WHEN s.is_group THEN 'group ' || s.i END, s.last_seq, ${created}, now() - make_interval(days => $2::int), a.user_id
     FROM seed_conv s JOIN seed_members a ON a.i = s.i AND a.k = 0 JOIN seed_members b ON b.i = s.i AND b.k = 1`,
    [Math.ceil(o.fromDaysAgo), Math.floor(o.toDaysAgo)],
  );
  await c.query(
    `INSERT INTO conversation_members (conversation_id, user_id, joined_at, role)
     SELECT m.id, m.user_id, ${created}, CASE WHEN s.is_group AND m.k = 0 THEN 'admin' ELSE 'member' END
     FROM seed_members m JOIN seed_conv s USING (i)`,
    [Math.ceil(o.fromDaysAgo)],
  );
  return groups;
}

/**
 * Message g: conversation g mod C, seq g div C + 1, sent by member (seq - 1) mod n; at an
 * even pace over the span; the id starts with its millisecond timestamp (uuid v7). A
 * message's id is a function of g alone, so an entry finds its target's id (g - C).
 */
async function seedMessages(c: Client, o: Required<Omit<SeedOptions, "log">>): Promise<void> {
  const id = (g: string) =>
    `(lpad(to_hex((extract(epoch FROM t0 + (${g})::float8 * step) * 1000)::bigint), 12, '0') || '7' || substr(md5((${g})::text), 1, 3)
       || '8' || substr(md5((${g})::text), 4, 15))::uuid`;
  await c.query(
    `WITH p AS (
       SELECT now() - make_interval(secs => $4::float8 * 86400) AS t0,
         make_interval(secs => ($4::float8 - $5::float8) * 86400 / $1::float8) AS step
     ), g AS (
       SELECT g, s.i, s.id AS conversation_id, s.is_group, (g / $2::int) + 1 AS seq, s.n
       FROM generate_series(0, $1::int - 1) AS g JOIN seed_conv s ON s.i = g % $2::int
     )
     INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
       created_at, expires_at, kind, ref_id, edited_at, reactions)
     SELECT ${id("g.g")}, g.conversation_id, g.seq, snd.user_id, CASE WHEN g.is_group THEN NULL ELSE rcp.user_id END,
       '${o.prefix}-' || g.g,
       CASE WHEN g.seq % 20 = 0 THEN '👍' ELSE repeat('h', $3::int) END,
       t0 + g.g::float8 * step, t0 + g.g::float8 * step + make_interval(days => $6::int),
       CASE WHEN g.seq % 20 = 0 THEN 'reaction' WHEN g.seq % 50 = 25 THEN 'edit' ELSE 'text' END,
       CASE WHEN g.seq % 20 = 0 OR g.seq % 50 = 25 THEN ${id("g.g - $2::int")} END,
       CASE WHEN (g.seq + 1) % 50 = 25 THEN t0 + (g.g + $2::int)::float8 * step END,
       -- The next seq's sender (member seq mod n) reacts to this one.
       CASE WHEN (g.seq + 1) % 20 = 0 THEN jsonb_build_object(rcp.user_id, '👍') ELSE '{}'::jsonb END
     FROM p, g
       JOIN seed_members snd ON snd.i = g.i AND snd.k = (g.seq - 1) % g.n
       JOIN seed_members rcp ON rcp.i = g.i AND rcp.k = g.seq % g.n`,
    [o.messages, o.conversations, o.contentSize, o.fromDaysAgo, o.toDaysAgo, o.ttlDays],
  );
}

/** Delivery rows and status stream rows, each in one pass over the seed's messages. */
async function seedReceipts(c: Client, o: Required<Omit<SeedOptions, "log">>): Promise<{ deliveryRows: number; streamRows: number }> {
  const unreadFrom = Math.max(1, Math.floor(Math.ceil(o.messages / o.conversations) * 0.98));
  // Hashing the small members table and streaming messages in table order keeps time order.
  const mine = `m.client_msg_id LIKE '${o.prefix}-%'`;
  const d = await c.query(
    `INSERT INTO message_delivery (message_id, recipient_id, status, delivered_at, read_at)
     SELECT m.message_id, cm.user_id, CASE WHEN m.seq > $1::int THEN 'sent' ELSE 'read' END,
       CASE WHEN m.seq > $1::int THEN NULL ELSE m.created_at + interval '2 seconds' END,
       CASE WHEN m.seq > $1::int THEN NULL ELSE m.created_at + interval '1 minute' END
     FROM messages m JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id <> m.from_user_id
     WHERE ${mine}`,
    [unreadFrom],
  );
  let streamRows = 0;
  if (o.streamEvery > 0) {
    const s = await c.query(
      `INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
       SELECT x.owner, m.message_id, x.status, cm.user_id, x.at, m.expires_at
       FROM messages m JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id <> m.from_user_id,
         LATERAL (VALUES (m.from_user_id, 'delivered', m.created_at + interval '2 seconds'),
                         (m.from_user_id, 'read', m.created_at + interval '1 minute'),
                         (cm.user_id, 'read', m.created_at + interval '1 minute')) AS x(owner, status, at)
       WHERE ${mine} AND m.seq <= $1::int AND m.seq % $2::int = 1`,
      [unreadFrom, o.streamEvery],
    );
    streamRows = s.rowCount ?? 0;
  }
  return { deliveryRows: d.rowCount ?? 0, streamRows };
}

export async function seedHistory(url: string, options: SeedOptions): Promise<SeedResult> {
  const log = options.log ?? (() => {});
  const o: Required<Omit<SeedOptions, "log">> = {
    groupShare: 0.1,
    groupSize: 8,
    fromDaysAgo: 29,
    toDaysAgo: 0,
    ttlDays: 30,
    streamEvery: 10,
    prefix: "hist",
    ...options,
  };
  if (o.fromDaysAgo <= o.toDaysAgo) throw new Error("seed: fromDaysAgo must be more than toDaysAgo");
  const users = Math.max(o.groupSize + 1, 3, Math.round((o.conversations * 2) / 5));
  const c = new Client({ connectionString: url });
  await c.connect();
  const t0 = performance.now();
  const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  try {
    await c.query("SET maintenance_work_mem = '256MB'");
    await c.query("SET work_mem = '64MB'");
    const partitioned = await isPartitioned(c);
    if (partitioned) {
      const day = 86_400_000;
      const created = await ensureDayPartitions(c, url, Date.now() - o.fromDaysAgo * day, Date.now() - o.toDaysAgo * day + 60_000);
      log(`seed: ${created.length} day partitions created in messages and message_delivery`);
    }
    const { tables, indexes, constraints } = await droppables(c);
    // Foreign keys first (they depend on the keys), then unique/primary keys, then indexes.
    for (const k of constraints) await c.query(`ALTER TABLE ${k.table} DROP CONSTRAINT ${k.name}`);
    for (const i of indexes) await c.query(`DROP INDEX ${i.name}`);

    const groups = await seedConversations(c, o, users);
    log(`seed: ${o.conversations} conversations (${groups} groups of ${o.groupSize}), ${users} users at ${at()}`);
    const tLoad = performance.now();
    await seedMessages(c, o);
    // Without statistics the planner takes the fresh table for tiny and joins it in a nested loop.
    if (partitioned) await c.query(`ANALYZE ${(await tablesWithRows(c, ["messages", "conversation_members"])).join(", ")}`);
    else await c.query("ANALYZE messages; ANALYZE conversation_members");
    log(`seed: ${o.messages} messages at ${at()}`);
    const { deliveryRows, streamRows } = await seedReceipts(c, o);
    if (tables.includes("message_idempotency")) {
      // The partitioned schema keeps (sender, clientMsgId) → message here (migration 20261202130000).
      await c.query(
        `INSERT INTO message_idempotency (from_user_id, client_msg_id, message_id, expires_at)
         SELECT from_user_id, client_msg_id, message_id, expires_at FROM messages WHERE client_msg_id LIKE '${o.prefix}-%'`,
      );
    }
    const loadSeconds = (performance.now() - tLoad) / 1000;
    log(`seed: ${deliveryRows} delivery rows, ${streamRows} status stream rows at ${at()}; rebuilding keys and indexes`);
    await c.query("DROP TABLE seed_members; DROP TABLE seed_conv");

    for (const k of [...constraints].reverse()) await c.query(`ALTER TABLE ${k.table} ADD CONSTRAINT ${k.name} ${k.def}`);
    for (const i of indexes) await c.query(i.def);
    // Never a partitioned parent: it would give the empty partitions ahead "0 rows" (tablesWithRows).
    const vacuumed = partitioned ? await tablesWithRows(c, tables) : tables;
    log(`seed: keys and indexes rebuilt at ${at()}; VACUUM (FREEZE, ANALYZE) of ${vacuumed.length} tables${partitioned ? " and day partitions that hold rows" : ""}, CHECKPOINT`);
    await c.query(`VACUUM (FREEZE, ANALYZE) ${vacuumed.join(", ")}`);
    await c.query("CHECKPOINT");
    return { messages: o.messages, conversations: o.conversations, groups, users, deliveryRows, streamRows, seconds: (performance.now() - t0) / 1000, loadSeconds };
  } finally {
    await c.end();
  }
}
