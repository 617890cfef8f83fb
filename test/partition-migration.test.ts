import { expect } from "chai";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import knex, { type Knex } from "knex";
import { Client } from "pg";
import { MigrationSource } from "../src/storage/MigrationSource";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device } from "./helpers/device";
import { ROOT } from "./helpers/processes";
import { startServer, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";

const run = promisify(execFile);
const KNEX = path.join(ROOT, "node_modules/.bin/knex");
const BEFORE = "20261202120000_media";

/** The migrations up to the one before partitioning: the schema a running deployment has today. */
class UpTo extends MigrationSource {
  override async getMigrations(): Promise<string[]> {
    return (await super.getMigrations()).filter((n) => n <= BEFORE);
  }
}

/** Every table the migration must not lose a row of, with the order that lines rows up. */
const TABLES: [string, string][] = [
  ["messages", "message_id"],
  ["message_delivery", "message_id, recipient_id"],
  ["status_stream", "owner_id, pos"],
  ["conversations", "conversation_id"],
  ["conversation_members", "conversation_id, user_id"],
  ["conversation_departures", "conversation_id, user_id"],
  ["media", "media_id"],
  ["pushkeys", "pushkey"],
  ["push_outbox", "message_id, recipient_id"],
  ["users", "user_id"],
];

/**
 * A populated database at the schema before partitioning, seeded in SQL the way the app
 * writes it: direct chats and groups (with a departure and group entries), text, edits,
 * deletes, reactions and media, delivery rows in every status, the status stream, pushkeys
 * and pending pushes; some messages expired, a few with random (v4) ids, as no
 * server wrote but a hand-made row could have.
 */
const SEED = `
CREATE FUNCTION pg_temp.v7(ts timestamptz) RETURNS uuid LANGUAGE sql AS $$
  SELECT encode(set_byte(overlay(uuid_send(gen_random_uuid())
    PLACING substring(int8send(floor(extract(epoch FROM ts) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 6, 112 + (random() * 15)::int), 'hex')::uuid
$$;
INSERT INTO users (user_id) SELECT 'u' || i FROM generate_series(1, 40) i;
INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by, last_seq)
  SELECT pg_temp.v7(now() - interval '40 days'), 'direct', 'u' || i || ' u' || (i + 1), now() - interval '40 days', 'u' || i, 0
  FROM generate_series(1, 39) i;
INSERT INTO conversation_members (conversation_id, user_id, joined_at, role)
  SELECT c.conversation_id, u, c.created_at, 'member' FROM conversations c, unnest(string_to_array(c.direct_key, ' ')) u;
INSERT INTO conversations (conversation_id, kind, title, created_at, created_by, last_seq, members_version)
  SELECT pg_temp.v7(now() - interval '40 days'), 'group', 'group ' || g, now() - interval '40 days', 'u' || g, 0, 0
  FROM generate_series(1, 4) g;
INSERT INTO conversation_members (conversation_id, user_id, joined_at, role, from_seq)
  SELECT c.conversation_id, 'u' || (i + n), c.created_at, CASE WHEN n = 0 THEN 'admin' ELSE 'member' END, 0
  FROM (SELECT conversation_id, created_at, row_number() OVER (ORDER BY conversation_id) AS i FROM conversations WHERE kind = 'group') c,
    generate_series(0, 5) n;
INSERT INTO conversation_departures (conversation_id, user_id, from_seq, until_seq, left_at, title)
  SELECT conversation_id, 'u30', 0, 7, now() - interval '3 days', title FROM conversations WHERE kind = 'group';
INSERT INTO media (media_id, owner_id, mime, size, name, created_at, stored_at, sent_at)
  SELECT pg_temp.v7(now() - interval '5 days'), 'u' || i, 'image/png', 1000 + i, 'p' || i || '.png',
    now() - interval '5 days', now() - interval '5 days', now() - interval '5 days'
  FROM generate_series(1, 10) i;

-- Text: 60 per conversation over the last 35 days (the oldest expired), each day one seq up.
WITH c AS (SELECT conversation_id, kind, direct_key, created_by FROM conversations),
t AS (
  SELECT c.*, s AS seq, now() - (35 - s * 35.0 / 60) * interval '1 day' AS at FROM c, generate_series(1, 60) s
)
INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content, created_at, expires_at, kind)
SELECT pg_temp.v7(at), conversation_id, seq,
  CASE WHEN seq % 2 = 0 AND kind = 'direct' THEN split_part(direct_key, ' ', 2) ELSE created_by END,
  CASE WHEN kind = 'direct' THEN CASE WHEN seq % 2 = 0 THEN created_by ELSE split_part(direct_key, ' ', 2) END END,
  'c-' || conversation_id || '-' || seq, 'text ' || seq, at, at + interval '30 days', 'text'
FROM t;
UPDATE conversations c SET last_seq = 60, last_message_at = now();
-- A few random (v4) ids: the migration sorts them past every day (into DEFAULT).
UPDATE messages SET message_id = ('f' || substr(gen_random_uuid()::text, 2))::uuid WHERE seq = 59;
-- Media on some, an edit, a reaction and a delete on others (entries take the next seqs).
UPDATE messages m SET media_id = md.media_id, media = jsonb_build_object('mediaId', md.media_id, 'mime', 'image/png', 'size', md.size)
FROM (SELECT media_id, size, row_number() OVER (ORDER BY media_id) AS i FROM media) md,
  (SELECT conversation_id, row_number() OVER (ORDER BY conversation_id) AS i FROM conversations) c
WHERE m.conversation_id = c.conversation_id AND c.i = md.i AND m.seq = 50;
WITH target AS (SELECT * FROM messages WHERE seq IN (40, 41, 42) AND kind = 'text')
INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content, created_at, expires_at, kind, ref_id)
SELECT pg_temp.v7(created_at + interval '1 minute'), conversation_id, 60 + (seq - 39), from_user_id, to_user_id,
  'e-' || message_id, CASE seq WHEN 40 THEN 'edited' WHEN 41 THEN '❤' ELSE '' END,
  created_at + interval '1 minute', expires_at, CASE seq WHEN 40 THEN 'edit' WHEN 41 THEN 'reaction' ELSE 'delete' END, message_id
FROM target;
UPDATE messages SET content = 'edited', edited_at = created_at + interval '1 minute' WHERE seq = 40 AND kind = 'text';
UPDATE messages SET reactions = jsonb_build_object(from_user_id, '❤') WHERE seq = 41 AND kind = 'text';
UPDATE messages SET content = '', deleted_at = created_at + interval '1 minute' WHERE seq = 42 AND kind = 'text';
WITH g AS (SELECT conversation_id, created_by FROM conversations WHERE kind = 'group')
INSERT INTO messages (message_id, conversation_id, seq, from_user_id, client_msg_id, content, created_at, expires_at, kind, "group")
SELECT pg_temp.v7(now() - interval '2 days'), conversation_id, 64, created_by, 'g-' || conversation_id, '',
  now() - interval '2 days', now() + interval '28 days', 'group', jsonb_build_object('op', 'rename', 'title', 'renamed')
FROM g;
UPDATE conversations SET last_seq = 64 WHERE kind = 'group';
UPDATE conversations SET last_seq = 63 WHERE kind = 'direct';

-- Delivery rows: every member but the sender; older ones read, then delivered, the newest sent.
INSERT INTO message_delivery (message_id, recipient_id, status, delivered_at, read_at)
SELECT m.message_id, cm.user_id,
  CASE WHEN m.seq < 30 THEN 'read' WHEN m.seq < 45 THEN 'delivered' ELSE 'sent' END,
  CASE WHEN m.seq < 45 THEN m.created_at + interval '1 second' END,
  CASE WHEN m.seq < 30 THEN m.created_at + interval '2 seconds' END
FROM messages m JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id <> m.from_user_id
ORDER BY m.conversation_id, m.seq, cm.user_id;
INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
SELECT m.from_user_id, d.message_id, d.status, d.recipient_id, d.delivered_at, m.expires_at
FROM message_delivery d JOIN messages m USING (message_id) WHERE d.status IN ('delivered', 'read') ORDER BY d.delivery_id;
INSERT INTO pushkeys (pushkey, user_id, app_id, registered_at) SELECT 'pk-' || i, 'u' || i, 'com.example', now() FROM generate_series(1, 20) i;
INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
SELECT d.message_id, d.recipient_id, now(), now() FROM message_delivery d JOIN pushkeys p ON p.user_id = d.recipient_id WHERE d.status = 'sent';
`;

/** Every row of every table, as JSON, in key order; and the tables' constraints and indexes. */
async function snapshot(pg: Client): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, order] of TABLES) {
    out[table] = (await pg.query(`SELECT to_jsonb(t) AS r FROM ${table} t ORDER BY ${order}`)).rows.map((r) => r.r);
  }
  return out;
}

async function schema(pg: Client): Promise<string[]> {
  const { rows } = await pg.query(
    `SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS d FROM pg_constraint
       WHERE conrelid::regclass::text IN ('messages', 'message_delivery', 'push_outbox')
     UNION ALL
     SELECT indexdef FROM pg_indexes WHERE tablename IN ('messages', 'message_delivery', 'push_outbox')
     UNION ALL
     SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(column_default, '') || ' ' || is_nullable || ' ' || is_identity
       FROM information_schema.columns WHERE table_name IN ('messages', 'message_delivery')
     ORDER BY 1`,
  );
  return rows.map((r) => r.d);
}

describe("the partitioning migration on a populated database", function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let pg: Client;
  let migrator: Knex;

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
    migrator = knex({ client: "pg", connection: db.url, migrations: { migrationSource: new UpTo() } });
    await migrator.migrate.latest();
    await pg.query(SEED);
  });
  after(async () => {
    await migrator.destroy();
    await pg.end();
    await db.drop();
  });

  it("keeps every row of every table through `migrate:latest` and back through the down migration", async () => {
    const original = await snapshot(pg);
    const originalSchema = await schema(pg);
    expect(original.messages!.length).to.be.above(2500);
    expect(original.status_stream!.length).to.be.above(1000);
    expect(original.push_outbox!.length).to.be.above(10);
    const env = { ...process.env, DATABASE_URL: db.url };

    const started = Date.now();
    const { stdout } = await run(KNEX, ["migrate:latest"], { cwd: ROOT, env });
    const upMs = Date.now() - started;
    expect(stdout).to.include("Batch 2 run: 1 migrations");
    const migrated = await snapshot(pg);
    for (const [table] of TABLES) expect(migrated[table], table).to.deep.equal(original[table]);
    // Where the rows went: the old tables as one partition, the random ids in DEFAULT.
    const where = await pg.query(
      `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM messages GROUP BY 1 ORDER BY 1`,
    );
    expect(where.rows).to.deep.equal([
      { p: "messages_default", n: 43 },
      { p: "messages_legacy", n: original.messages!.length - 43 },
    ]);
    // Every retained (sender, clientMsgId) keeps its message in the idempotency key.
    const keys = await pg.query(
      `SELECT count(*)::int AS n FROM messages m JOIN message_idempotency k
         ON k.from_user_id = m.from_user_id AND k.client_msg_id = m.client_msg_id AND k.message_id = m.message_id`,
    );
    expect(keys.rows[0].n).to.equal(original.messages!.length);

    const downStarted = Date.now();
    await run(KNEX, ["migrate:down"], { cwd: ROOT, env });
    const downMs = Date.now() - downStarted;
    const reverted = await snapshot(pg);
    for (const [table] of TABLES) expect(reverted[table], table).to.deep.equal(original[table]);
    expect(await schema(pg)).to.deep.equal(originalSchema);
    console.log(`      migration of ${original.messages!.length} messages, ${original.message_delivery!.length} delivery rows: up ${upMs} ms, down ${downMs} ms (CLI included)`);

    await run(KNEX, ["migrate:latest"], { cwd: ROOT, env });
    for (const [table, rows] of Object.entries(await snapshot(pg))) expect(rows, table).to.deep.equal(original[table]);
  });

  it("serves the migrated data: old clientMsgIds stay idempotent, backlogs and delivery order carry on", async () => {
    const server = await startServer(db.url);
    const devices: Device[] = [];
    try {
      // u5's unexpired, unconfirmed messages, oldest delivery row first, as the backlog hands them out.
      const { rows: pending } = await pg.query(
        `SELECT m.message_id FROM message_delivery d JOIN messages m USING (message_id)
         WHERE d.recipient_id = 'u5' AND d.status = 'sent' AND m.expires_at > now() ORDER BY d.delivery_id`,
      );
      expect(pending.length).to.be.above(10);
      const u5 = new Device(urlOf(server), { userId: "u5" });
      devices.push(u5);
      await u5.connectSynced();
      expect(u5.received.map((m) => m.id)).to.deep.equal(pending.map((r) => r.message_id));

      // A retry of a message stored before the migration: answered with the original.
      const { rows: [old] } = await pg.query(
        `SELECT message_id, client_msg_id, to_user_id, content FROM messages
         WHERE from_user_id = 'u4' AND kind = 'text' AND to_user_id IS NOT NULL AND expires_at > now() ORDER BY seq DESC LIMIT 1`,
      );
      const u4 = new Device(urlOf(server), { userId: "u4" });
      devices.push(u4);
      await u4.connectSynced();
      const retry = await u4.request("message:send", { clientMsgId: old.client_msg_id, to: old.to_user_id, content: old.content });
      expectOk(retry);
      expect(retry.duplicate).to.equal(true);
      expect(retry.message.id).to.equal(old.message_id);

      // A new message goes on after the old ones: next seq, a delivery_id past every old one.
      const fresh = await u4.send(old.to_user_id, "after the migration");
      const last = await pg.query(`SELECT max(seq)::int AS seq FROM messages WHERE conversation_id = $1 AND message_id <> $2`, [
        fresh.conversationId,
        fresh.id,
      ]);
      expect(fresh.seq).to.equal(last.rows[0].seq + 1);
      const ids = await pg.query(
        `SELECT (SELECT delivery_id FROM message_delivery WHERE message_id = $1) > (SELECT max(delivery_id) FROM message_delivery WHERE message_id <> $1) AS later`,
        [fresh.id],
      );
      expect(ids.rows[0].later).to.equal(true);
    } finally {
      devices.forEach((d) => d.close());
      await server.stop();
    }
  });
});
