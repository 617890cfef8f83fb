import type { Knex } from "knex";

/**
 * `messages` and `message_delivery` become range-partitioned on `message_id`, one
 * partition per UTC day, so expiry drops a day's partition (a catalogue change) instead of
 * deleting it row by row (docs/storage.md has the whole design and its costs).
 *
 * Why `message_id`: ids are UUIDv7, whose first 48 bits are the creation time in ms, and
 * PostgreSQL compares uuids bytewise, so a day is the range from
 * `<that midnight's ms, 12 hex digits>-0000-0000-0000-000000000000` to the next one. The primary keys stay
 * `(message_id)` and `(message_id, recipient_id)` (a unique key must contain the partition
 * key), every lookup by id reaches one partition, and both tables share their bounds, so a
 * day's messages and delivery rows are dropped together. Why a day: with the 30-day TTL
 * about 34 partitions per table are live (a scan not by id visits each), and a message's
 * space is given back at most a day after it expired.
 *
 * What changes with it:
 * - `message_idempotency (from_user_id, client_msg_id) → message_id, expires_at`: the old
 *   UNIQUE (from_user_id, client_msg_id) cannot be global on a partitioned table (it does
 *   not contain the key), so it lives here, filled from every existing message; the expiry
 *   sweep deletes its expired rows (narrow rows, a BRIN on expires_at).
 * - UNIQUE (conversation_id, seq) is kept per partition (each partition has its own unique
 *   index); across partitions it holds because seq comes from the conversation's counter,
 *   moved under its row lock, which never goes back.
 * - The ON DELETE CASCADE foreign keys go (message_delivery → messages, messages.ref_id →
 *   messages, push_outbox → message_delivery): a partition drop takes a day of messages and
 *   its delivery rows at once, entries expire with their target (same expires_at), and the
 *   sweep deletes what the default partition and push_outbox hold explicitly.
 * - delivery_id was an identity column, which a partitioned table may not have before
 *   PostgreSQL 17: a sequence default, continuing from the identity's last value.
 *
 * The existing tables are not copied: they are renamed `messages_legacy` and
 * `message_delivery_legacy` and attached as the partitions FROM (MINVALUE) TO (now), with
 * their indexes reused; they are dropped, like any partition, once all their rows expired.
 * Rows whose id lies at or after that instant (a skewed clock) are moved through the new
 * tables. A DEFAULT partition catches ids outside every range (a clock set back past a
 * dropped day): a write never fails for want of a partition.
 *
 * The whole migration is one transaction holding both tables exclusively: until it commits,
 * sends and reads wait. Its cost is the copy into message_idempotency and one scan of each
 * legacy table (docs/storage.md: measured).
 */
const DAY_MS = 86_400_000;
/** Days after today that get their partitions now; the expiry sweep keeps this many ahead. */
const AHEAD_DAYS = 3;

/** The smallest UUIDv7 of this millisecond: 48-bit time, everything else zero. */
export function uuidBound(ms: number): string {
  const hex = Math.floor(ms).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** `p20261202` for a whole day, `p20261202_153000123` for one that starts later (the first). */
function partitionSuffix(from: number): string {
  const iso = new Date(from).toISOString();
  const day = `p${iso.slice(0, 10).replace(/-/g, "")}`;
  return from % DAY_MS === 0 ? day : `${day}_${iso.slice(11, 23).replace(/[:.]/g, "")}`;
}

async function createDay(knex: Knex, from: number, to: number): Promise<void> {
  const suffix = partitionSuffix(from);
  const [lo, hi] = [uuidBound(from), uuidBound(to)];
  await knex.raw(`CREATE TABLE messages_${suffix} PARTITION OF messages FOR VALUES FROM ('${lo}') TO ('${hi}')`);
  await knex.raw(`CREATE UNIQUE INDEX messages_${suffix}_conversation_seq ON messages_${suffix} (conversation_id, seq)`);
  await knex.raw(`CREATE TABLE message_delivery_${suffix} PARTITION OF message_delivery FOR VALUES FROM ('${lo}') TO ('${hi}')`);
}

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`LOCK TABLE messages, message_delivery, push_outbox IN ACCESS EXCLUSIVE MODE`);
  const nowMs = Number((await knex.raw(`SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms`)).rows[0].ms);
  const cut = uuidBound(nowMs);

  // Idempotency, global: every existing message's (sender, clientMsgId), keyed after the copy.
  await knex.raw(`CREATE TABLE message_idempotency (
    from_user_id varchar(64) NOT NULL,
    client_msg_id varchar(64) NOT NULL,
    message_id uuid NOT NULL,
    expires_at timestamptz NOT NULL
  )`);
  await knex.raw(`INSERT INTO message_idempotency SELECT from_user_id, client_msg_id, message_id, expires_at FROM messages`);
  await knex.raw(`ALTER TABLE message_idempotency ADD PRIMARY KEY (from_user_id, client_msg_id)`);
  await knex.raw(`CREATE INDEX message_idempotency_expires_at_brin ON message_idempotency USING brin (expires_at) WITH (autosummarize = on)`);

  // The cascades go; the idempotency key now lives in its own table.
  await knex.raw(`ALTER TABLE push_outbox DROP CONSTRAINT push_outbox_message_id_recipient_id_foreign`);
  await knex.raw(`ALTER TABLE message_delivery DROP CONSTRAINT message_delivery_message_id_foreign`);
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_ref_id_foreign`);
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_from_user_id_client_msg_id_unique`);

  // delivery_id: from identity to a sequence that goes on where the identity stopped.
  const seq = (await knex.raw(`SELECT last_value, is_called FROM message_delivery_delivery_id_seq`)).rows[0];
  await knex.raw(`ALTER TABLE message_delivery ALTER COLUMN delivery_id DROP IDENTITY`);
  await knex.raw(`CREATE SEQUENCE message_delivery_delivery_id_seq`);
  await knex.raw(`SELECT setval('message_delivery_delivery_id_seq', ?, ?)`, [seq.last_value, seq.is_called]);

  // The old tables step aside, their index names with them (the new tables take the old names).
  for (const [from, to] of [
    ["messages", "messages_legacy"],
    ["message_delivery", "message_delivery_legacy"],
  ]) await knex.raw(`ALTER TABLE ${from} RENAME TO ${to}`);
  for (const index of [
    "messages_pkey",
    "messages_conversation_id_seq_unique",
    "messages_expires_at_brin",
    "messages_media_id_idx",
    "messages_ref_id_idx",
    "message_delivery_pkey",
    "message_delivery_recipient_status_idx",
  ]) await knex.raw(`ALTER INDEX ${index} RENAME TO ${index.replace(/^(messages|message_delivery)_/, "$1_legacy_")}`);

  await knex.raw(`CREATE TABLE messages (LIKE messages_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (message_id)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (message_id)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_media_id_foreign FOREIGN KEY (media_id) REFERENCES media (media_id)`);
  await knex.raw(`CREATE INDEX messages_expires_at_brin ON messages USING brin (expires_at) WITH (autosummarize = on)`);
  await knex.raw(`CREATE INDEX messages_ref_id_idx ON messages (ref_id) WHERE ref_id IS NOT NULL`);
  await knex.raw(`CREATE INDEX messages_media_id_idx ON messages (media_id) WHERE media_id IS NOT NULL`);

  await knex.raw(`CREATE TABLE message_delivery (LIKE message_delivery_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (message_id)`);
  await knex.raw(`ALTER TABLE message_delivery ALTER COLUMN delivery_id SET DEFAULT nextval('message_delivery_delivery_id_seq')`);
  await knex.raw(`ALTER SEQUENCE message_delivery_delivery_id_seq OWNED BY message_delivery.delivery_id`);
  await knex.raw(`ALTER TABLE message_delivery ADD CONSTRAINT message_delivery_pkey PRIMARY KEY (message_id, recipient_id)`);
  await knex.raw(`CREATE INDEX message_delivery_recipient_status_idx ON message_delivery (recipient_id, status, delivery_id)`);

  for (const table of ["messages", "message_delivery"]) {
    await knex.raw(`CREATE TABLE ${table}_default PARTITION OF ${table} DEFAULT`);
  }
  await knex.raw(`CREATE UNIQUE INDEX messages_default_conversation_seq ON messages_default (conversation_id, seq)`);

  // Rows stamped at or after the cut (a node's clock ahead of the database's) go through the
  // new tables; the rest stays where it is.
  for (const table of ["messages", "message_delivery"]) {
    await knex.raw(`CREATE TEMP TABLE ${table}_early (LIKE ${table}_legacy) ON COMMIT DROP`);
    await knex.raw(`WITH moved AS (DELETE FROM ${table}_legacy WHERE message_id >= ? RETURNING *)
      INSERT INTO ${table}_early SELECT * FROM moved`, [cut]);
  }

  await knex.raw(`ALTER TABLE messages ATTACH PARTITION messages_legacy FOR VALUES FROM (MINVALUE) TO ('${cut}')`);
  await knex.raw(`ALTER TABLE message_delivery ATTACH PARTITION message_delivery_legacy FOR VALUES FROM (MINVALUE) TO ('${cut}')`);

  const dayStart = Math.floor(nowMs / DAY_MS) * DAY_MS;
  await createDay(knex, nowMs, dayStart + DAY_MS);
  for (let d = 1; d <= AHEAD_DAYS; d++) await createDay(knex, dayStart + d * DAY_MS, dayStart + (d + 1) * DAY_MS);

  await knex.raw(`INSERT INTO messages SELECT * FROM messages_early`);
  await knex.raw(`INSERT INTO message_delivery SELECT * FROM message_delivery_early`);

  // The key table is new and holds a row per message: without statistics the append's plan
  // was costed at ~44 M and JIT-compiled on every execution (1.5 s an append at 20 M rows;
  // docs/benchmarks.md, "History at 20 M messages"). The legacy partitions keep the old
  // tables' statistics. Not the partitioned parents: ANALYZE on one recurses into the empty
  // day partitions, and "0 rows" statistics make plans cached that day scan the day whole.
  // Only when it holds rows: on a fresh database ANALYZE records "0 rows", and the append's
  // cached generic plan then reads the whole key table for every send as it fills (1-1.8 s an
  // append after a minute of load: docs/benchmarks.md, "History at 20 M messages", the
  // native seed). Left unanalyzed, the planner takes it for at least 10 pages and probes it.
  const held = await knex.raw(`SELECT EXISTS (SELECT 1 FROM message_idempotency) AS held`);
  if (held.rows[0].held) await knex.raw(`ANALYZE message_idempotency`);
}

/**
 * Back to the two plain tables: every partition's rows in one table each (a copy), the
 * constraints and cascades as they were, and message_idempotency dropped (its key is the
 * UNIQUE constraint again). Fails, changing nothing, if two retained messages share a
 * (sender, clientMsgId), which only a hand-dropped partition's lost idempotency row allows.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`LOCK TABLE messages, message_delivery, push_outbox IN ACCESS EXCLUSIVE MODE`);
  const seq = (await knex.raw(`SELECT last_value, is_called FROM message_delivery_delivery_id_seq`)).rows[0];
  await knex.raw(`ALTER TABLE messages RENAME TO messages_partitioned`);
  await knex.raw(`ALTER TABLE message_delivery RENAME TO message_delivery_partitioned`);
  await knex.raw(`ALTER SEQUENCE message_delivery_delivery_id_seq RENAME TO message_delivery_partitioned_seq`);
  for (const index of [
    "messages_pkey",
    "messages_expires_at_brin",
    "messages_media_id_idx",
    "messages_ref_id_idx",
    "message_delivery_pkey",
    "message_delivery_recipient_status_idx",
  ]) await knex.raw(`ALTER INDEX ${index} RENAME TO ${index.replace(/^(messages|message_delivery)_/, "$1_partitioned_")}`);

  await knex.raw(`CREATE TABLE messages (LIKE messages_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
  await knex.raw(`INSERT INTO messages SELECT * FROM messages_partitioned`);
  await knex.raw(`CREATE TABLE message_delivery (LIKE message_delivery_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
  await knex.raw(`ALTER TABLE message_delivery ALTER COLUMN delivery_id DROP DEFAULT`);
  await knex.raw(`INSERT INTO message_delivery SELECT * FROM message_delivery_partitioned`);
  await knex.raw(`DROP TABLE messages_partitioned, message_delivery_partitioned`);

  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (message_id)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_seq_unique UNIQUE (conversation_id, seq)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_from_user_id_client_msg_id_unique UNIQUE (from_user_id, client_msg_id)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_media_id_foreign FOREIGN KEY (media_id) REFERENCES media (media_id)`);
  // Entries outlive their target when the target's day was dropped first (both expired).
  await knex.raw(`DELETE FROM messages e WHERE e.ref_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = e.ref_id)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_ref_id_foreign
    FOREIGN KEY (ref_id) REFERENCES messages (message_id) ON DELETE CASCADE`);
  await knex.raw(`CREATE INDEX messages_expires_at_brin ON messages USING brin (expires_at) WITH (autosummarize = on)`);
  await knex.raw(`CREATE INDEX messages_ref_id_idx ON messages (ref_id) WHERE ref_id IS NOT NULL`);
  await knex.raw(`CREATE INDEX messages_media_id_idx ON messages (media_id) WHERE media_id IS NOT NULL`);

  await knex.raw(`ALTER TABLE message_delivery ALTER COLUMN delivery_id ADD GENERATED ALWAYS AS IDENTITY`);
  await knex.raw(`SELECT setval(pg_get_serial_sequence('message_delivery', 'delivery_id'), ?, ?)`, [seq.last_value, seq.is_called]);
  await knex.raw(`ALTER TABLE message_delivery ADD CONSTRAINT message_delivery_pkey PRIMARY KEY (message_id, recipient_id)`);
  await knex.raw(`CREATE INDEX message_delivery_recipient_status_idx ON message_delivery (recipient_id, status, delivery_id)`);
  // Delivery rows whose message went with a hand-dropped partition cannot come back under the foreign key.
  await knex.raw(`DELETE FROM message_delivery d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = d.message_id)`);
  await knex.raw(`ALTER TABLE message_delivery ADD CONSTRAINT message_delivery_message_id_foreign
    FOREIGN KEY (message_id) REFERENCES messages (message_id) ON DELETE CASCADE`);
  await knex.raw(`DELETE FROM push_outbox o WHERE NOT EXISTS (
    SELECT 1 FROM message_delivery d WHERE d.message_id = o.message_id AND d.recipient_id = o.recipient_id)`);
  await knex.raw(`ALTER TABLE push_outbox ADD CONSTRAINT push_outbox_message_id_recipient_id_foreign
    FOREIGN KEY (message_id, recipient_id) REFERENCES message_delivery (message_id, recipient_id) ON DELETE CASCADE`);
  await knex.raw(`DROP TABLE message_idempotency`);
}
