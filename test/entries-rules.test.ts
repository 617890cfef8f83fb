import { expect } from "chai";
import { Client } from "pg";
import { v4 as uuidv4 } from "uuid";
import type { RunningTicks } from "../src/main";
import type { Message, Reply, SendResult } from "../src/protocol";
import { createDatabase } from "../src/storage/database";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId } from "./helpers/device";
import { ManualClock, startServer, urlOf } from "./helpers/server";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function ok(reply: Reply<SendResult>): Message {
  if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
  return reply.message;
}

/** Everything a refused request must leave as it was. */
async function snapshot(pg: Client): Promise<unknown> {
  const { rows } = await pg.query(`SELECT
      (SELECT count(*)::int FROM messages) AS messages,
      (SELECT count(*)::int FROM message_delivery) AS deliveries,
      (SELECT coalesce(sum(last_seq), 0)::int FROM conversations) AS seqs,
      (SELECT json_agg(json_build_object('id', message_id, 'content', content, 'edited', edited_at,
         'deleted', deleted_at, 'reactions', reactions) ORDER BY message_id) FROM messages) AS state`);
  return rows[0];
}

describe("edits, deletes and reactions: rules, windows, errors and expiry", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  let pg: Client;
  const clock = new ManualClock();
  const devices: Device[] = [];
  const device = (userId: string) => {
    const d = new Device(urlOf(server), { userId });
    devices.push(d);
    return d.connectSynced();
  };

  before(async () => {
    db = await createTestDatabase();
    // The windows at their defaults: 15 minutes to edit, 48 hours to delete.
    server = await startServer(db.url, { MAX_CONTENT_LENGTH: "100" }, clock);
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  after(async () => {
    await pg.end();
    await server.stop();
    await db.drop();
  });

  const edit = (d: Device, messageId: string, content: string) =>
    d.request("message:edit", { clientMsgId: uuidv4(), messageId, content });
  const del = (d: Device, messageId: string) => d.request("message:delete", { clientMsgId: uuidv4(), messageId });
  const react = (d: Device, messageId: string, emoji: string) =>
    d.request("message:react", { clientMsgId: uuidv4(), messageId, emoji });

  it("refuses every bad action with a clear error and stores nothing", async () => {
    const [a, b, m] = [uniqueId("alice"), uniqueId("bob"), uniqueId("mallory")];
    const alice = await device(a);
    const bob = await device(b);
    const mallory = await device(m);
    const text = ok(await alice.request("message:send", { clientMsgId: uuidv4(), to: b, content: "hi bob" }));
    const entry = ok(await react(bob, text.id, "👋"));
    const gone = ok(await alice.request("message:send", { clientMsgId: uuidv4(), to: b, content: "oops" }));
    ok(await del(alice, gone.id));
    const before = await snapshot(pg);

    const cases: [string, Promise<Reply<SendResult>>, string, RegExp][] = [
      ["edit someone else's", edit(bob, text.id, "mine now"), "FORBIDDEN", /only the sender can edit/],
      ["delete someone else's", del(bob, text.id), "FORBIDDEN", /only the sender can delete/],
      ["edit a deleted message", edit(alice, gone.id, "back"), "FORBIDDEN", /deleted/],
      ["react to a deleted message", react(bob, gone.id, "👍"), "FORBIDDEN", /deleted/],
      ["react with an over-long emoji", react(bob, text.id, "👍".repeat(33)), "BAD_REQUEST", /emoji is at most 32/],
      ["edit in a conversation one is not in", edit(mallory, text.id, "x"), "NOT_FOUND", /no such message/],
      ["delete in a conversation one is not in", del(mallory, text.id), "NOT_FOUND", /no such message/],
      ["react in a conversation one is not in", react(mallory, text.id, "👎"), "NOT_FOUND", /no such message/],
      ["edit an unknown id", edit(alice, uuidv4(), "x"), "NOT_FOUND", /no such message/],
      ["delete an unknown id", del(alice, uuidv4()), "NOT_FOUND", /no such message/],
      ["react to an unknown id", react(alice, uuidv4(), "x"), "NOT_FOUND", /no such message/],
      ["act on an entry", react(alice, entry.id, "x"), "BAD_REQUEST", /reaction entry: only text messages/],
      ["edit with over-long content", edit(alice, text.id, "x".repeat(101)), "TOO_LARGE", /longer than 100/],
      ["edit to nothing", edit(alice, text.id, ""), "BAD_REQUEST", /content must not be empty/],
      ["a malformed id", edit(alice, "not-a-uuid", "x"), "BAD_REQUEST", /messageId: must be a UUID/],
    ];
    for (const [what, reply, code, message] of cases) {
      const r = await reply;
      expect(r.ok, what).to.equal(false);
      if (r.ok) continue;
      expect(r.error.code, what).to.equal(code);
      expect(r.error.message, what).to.match(message);
    }
    const raw = await alice.raw("message:react", { clientMsgId: uuidv4(), messageId: text.id });
    expect(raw).to.have.nested.property("error.code", "BAD_REQUEST");
    expect(await snapshot(pg)).to.deep.equal(before);

    // 32 characters is fine (counted in code points, not UTF-16 units).
    expect(ok(await react(bob, text.id, "👍".repeat(32))).content).to.equal("👍".repeat(32));
  });

  it("allows edits for 15 minutes and deletes for 48 hours after createdAt, by the server's clock", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await device(a);
    const bob = await device(b);
    const text = ok(await alice.request("message:send", { clientMsgId: uuidv4(), to: b, content: "v1" }));
    const other = ok(await alice.request("message:send", { clientMsgId: uuidv4(), to: b, content: "other" }));
    clock.advance(15 * MINUTE - 1000);
    ok(await edit(alice, text.id, "v2"));
    clock.advance(2000);
    let before = await snapshot(pg);
    const late = await edit(alice, text.id, "v3");
    expect(late).to.deep.equal({
      ok: false,
      error: { code: "FORBIDDEN", message: "a message can be edited only within 15 minutes of sending" },
    });
    expect(await snapshot(pg)).to.deep.equal(before);
    // Reactions have no window.
    clock.advance(47 * HOUR);
    ok(await react(bob, text.id, "⏰"));
    clock.advance(HOUR - 15 * MINUTE - 2000); // 48 h less a second after sending
    ok(await del(alice, other.id));
    clock.advance(2000);
    before = await snapshot(pg);
    expect(await del(alice, text.id)).to.deep.equal({
      ok: false,
      error: { code: "FORBIDDEN", message: "a message can be deleted only within 48 hours of sending" },
    });
    expect(await snapshot(pg)).to.deep.equal(before);
    const history = await bob.request("message:history", { conversationId: text.conversationId });
    expect(history.ok && history.messages[0]).to.include({ content: "v2" });
  });

  it("entries expire with their message: never delivered after it, swept with it", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await device(a);
    const text = ok(await alice.request("message:send", { clientMsgId: uuidv4(), to: b, content: "soon gone" }));
    clock.advance(DAY);
    // Made a day later, it still expires when its message does (else it would outlive it).
    const e = ok(await react(alice, text.id, "⌛"));
    expect(e.expiresAt).to.equal(text.expiresAt);
    clock.advance(30 * DAY);
    expect(await react(alice, text.id, "🪦")).to.have.nested.property("error.code", "NOT_FOUND");
    const bob = await device(b);
    expect(bob.received).to.deep.equal([]);
    await server.sweeper.sweepNow();
    const left = await pg.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1 OR ref_id = $1", [text.id]);
    expect(left.rows[0].n).to.equal(0);
  });
});

describe("edits and deletes racing through two servers", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let servers: RunningTicks[];
  let pg: Client;

  before(async () => {
    db = await createTestDatabase();
    servers = [await startServer(db.url), await startServer(db.url)];
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  after(async () => {
    await pg.end();
    await Promise.all(servers.map((s) => s.stop()));
    await db.drop();
  });

  it("never leaves an edit's content behind a delete, and never stores an edit after one", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const phone = await new Device(urlOf(servers[0]!), { userId: a, deviceId: "phone" }).connectSynced();
    const laptop = await new Device(urlOf(servers[1]!), { userId: a, deviceId: "laptop" }).connectSynced();
    const texts = await Promise.all(
      Array.from({ length: 40 }, (_, i) => phone.request("message:send", { clientMsgId: uuidv4(), to: b, content: `t${i}` })),
    ).then((rs) => rs.map(ok));
    // Each message edited from one node while the other deletes it, all at once.
    const replies = await Promise.all(
      texts.flatMap((t, i) => [
        ...[1, 2, 3].map((n) => phone.request("message:edit", { clientMsgId: uuidv4(), messageId: t.id, content: `secret ${i}.${n}` })),
        laptop.request("message:delete", { clientMsgId: uuidv4(), messageId: t.id }),
      ]),
    );
    for (const r of replies) {
      if (!r.ok) expect(r.error.code).to.equal("FORBIDDEN"); // an edit that came after the delete
    }
    const leftovers = await pg.query("SELECT kind, content FROM messages WHERE content LIKE 'secret%' OR (kind = 'text' AND content <> '')");
    expect(leftovers.rows).to.deep.equal([]);
    const late = await pg.query(
      `SELECT count(*)::int AS n FROM messages e JOIN messages d ON d.ref_id = e.ref_id AND d.kind = 'delete'
       WHERE e.kind = 'edit' AND e.seq > d.seq`,
    );
    expect(late.rows[0].n).to.equal(0);
    const seqs = await pg.query("SELECT seq FROM messages ORDER BY seq");
    expect(seqs.rows.map((r) => Number(r.seq))).to.deep.equal(Array.from({ length: seqs.rows.length }, (_, i) => i + 1));
    expect(seqs.rows.length).to.equal(40 + replies.filter((r) => r.ok).length);
    phone.close();
    laptop.close();
  });
});

describe("migrating a database with version 1 messages", function () {
  this.timeout(60_000);
  it("turns every existing row into a text message with no edits, deletion or reactions", async () => {
    const db = await createTestDatabase();
    const knex = createDatabase({ kind: "postgres", url: db.url });
    try {
      await knex.migrate.up(); // the core schema only: version 1
      const conversation = uuidv4();
      const message = uuidv4();
      await knex.raw(
        `INSERT INTO conversations (conversation_id, kind, direct_key, created_at) VALUES (?, 'direct', 'old1 old2', now())`,
        [conversation],
      );
      await knex.raw(`INSERT INTO conversation_members (conversation_id, user_id, joined_at) VALUES (?, 'old1', now()), (?, 'old2', now())`, [
        conversation,
        conversation,
      ]);
      await knex.raw(
        `INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content, created_at, expires_at)
         VALUES (?, ?, 1, 'old1', 'old2', 'c1', 'from before', now(), now() + interval '1 day')`,
        [message, conversation],
      );
      await knex.raw(`UPDATE conversations SET last_seq = 1 WHERE conversation_id = ?`, [conversation]);
      await knex.migrate.latest();
      const { rows } = await knex.raw(`SELECT kind, ref_id, edited_at, deleted_at, reactions, content FROM messages`);
      expect(rows).to.deep.equal([{ kind: "text", ref_id: null, edited_at: null, deleted_at: null, reactions: {}, content: "from before" }]);
    } finally {
      await knex.destroy();
    }
    // And the server hands it out in the extended shape, and lets its sender act on it.
    const server = await startServer(db.url);
    const old1 = await new Device(urlOf(server), { userId: "old1" }).connectSynced();
    try {
      const list = await old1.request("conversation:list", {});
      if (!list.ok) throw new Error(list.error.message);
      const last = list.conversations[0]!.lastMessage!;
      expect(last).to.include({ kind: "text", refId: null, editedAt: null, deletedAt: null, content: "from before" });
      expect(last.reactions).to.deep.equal([]);
      expect(ok(await old1.request("message:react", { clientMsgId: "r1", messageId: last.id, emoji: "🎉" })).seq).to.equal(2);
    } finally {
      old1.close();
      await server.stop();
      await db.drop();
    }
  });
});
