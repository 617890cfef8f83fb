import { expect } from "chai";
import pg, { Client } from "pg";
import type { AppendRequest, AppendResult } from "../src/messaging/ports";
import { messageIdAt } from "../src/messaging/messageIds";
import { directKey } from "../src/messaging/routing";
import type { Message } from "../src/protocol";
import { appendBatch } from "../src/storage/append/appendBatch";
import { createDatabase, createHotPathDatabase } from "../src/storage/database";
import { SqlMessageStore } from "../src/storage/SqlMessageStore";
import { useMigratedDatabase } from "./helpers/migratedDatabase";
import { okValue as value, textRequest as text } from "./helpers/appendRequests";
import { uniqueId, waitFor } from "./helpers/device";
import { expectOk } from "./helpers/replies";
import { useServerSuite } from "./helpers/serverSuite";
import { useTwoNodesOnPostgres } from "./helpers/twoNodesOnPostgres";

/**
 * Every statement this process sends to PostgreSQL through `pg` while `counting` (Knex's
 * queries and the named hot-path statements alike go through Client.prototype.query), by
 * name: the append statements are named ticks_append*, the conversation creation of the
 * fallback is Knex's unnamed SQL.
 */
function statementLog() {
  const seen: string[] = [];
  let counting = false;
  const original = pg.Client.prototype.query;
  before(() => {
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      if (counting) {
        const q = args[0] as string | { name?: string; text?: string };
        seen.push(typeof q === "string" ? q : (q.name ?? q.text ?? "?"));
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof original;
  });
  after(() => {
    pg.Client.prototype.query = original;
  });
  return {
    async during<T>(work: () => Promise<T>): Promise<{ result: T; statements: string[] }> {
      seen.length = 0;
      counting = true;
      try {
        const result = await work();
        return { result, statements: [...seen] };
      } finally {
        counting = false;
      }
    },
  };
}

const isWrite = (s: string) => s.startsWith("ticks_append");
const isCreateDirect = (s: string) => s.includes("INSERT INTO conversations");

/**
 * A first message between two users: the write statement creates the conversation, its
 * members and directory entries itself (src/storage/append/writeParts.ts, CREATED), so it
 * commits in one statement; a pair created by another node meanwhile falls back to
 * createDirect and a second write.
 */
describe("first contact: one write statement (store)", function () {
  this.timeout(60_000);
  const t = useMigratedDatabase();
  const log = statementLog();

  // Connections opened (and set up) before anything is counted.
  before(() => Promise.all([t.main.raw("SELECT 1"), t.hot.raw("SELECT 1")]));

  const conversationOf = async (a: string, b: string) =>
    (await t.pg.query(`SELECT * FROM conversations WHERE direct_key = $1`, [directKey(a, b)])).rows;

  for (const push of [false, true]) {
    it(`stores a first message in one statement: one conversation at seq 1, both members, the directory, the delivery row${push ? " and the push" : ""}`, async () => {
      const a = uniqueId("a");
      const b = uniqueId("b");
      if (push) {
        await t.pg.query(`INSERT INTO pushkeys (pushkey, user_id, app_id, registered_at) VALUES ($1, $2, 'app', now())`, [uniqueId("k"), b]);
      }
      const req = text(a, b);
      const { result, statements } = await log.during(() => appendBatch(t.main, [req], { hot: t.hot, pushDelayMs: push ? 5_000 : undefined }));
      expect(statements, "one statement").to.deep.equal([push ? "ticks_append_plain_push" : "ticks_append_plain"]);
      const stored = value(result[0]);
      expect(stored.duplicate).to.equal(false);
      expect(stored.message.seq).to.equal(1);
      expect((stored as { recipients: string[] }).recipients).to.deep.equal([b]);

      const conversations = await conversationOf(a, b);
      expect(conversations).to.have.length(1);
      const c = conversations[0];
      expect(c.conversation_id).to.equal(stored.message.conversationId);
      expect(c.conversation_id, "an id of its own").to.not.equal(req.id);
      expect(c).to.include({ kind: "direct", created_by: a });
      expect(Number(c.last_seq)).to.equal(1);
      expect(new Date(c.last_message_at).getTime()).to.equal(req.createdAt.getTime());
      expect(new Date(c.created_at).getTime()).to.equal(req.createdAt.getTime());
      const members = await t.pg.query(`SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id`, [c.conversation_id]);
      expect(members.rows.map((r) => r.user_id)).to.deep.equal([a, b].sort());
      const users = await t.pg.query(`SELECT user_id FROM users WHERE user_id = ANY($1) ORDER BY user_id`, [[a, b]]);
      expect(users.rows.map((r) => r.user_id)).to.deep.equal([a, b].sort());
      const delivery = await t.pg.query(`SELECT recipient_id, status FROM message_delivery WHERE message_id = $1`, [req.id]);
      expect(delivery.rows).to.deep.equal([{ recipient_id: b, status: "sent" }]);
      const pushes = await t.pg.query(`SELECT recipient_id FROM push_outbox WHERE message_id = $1`, [req.id]);
      expect(pushes.rows).to.deep.equal(push ? [{ recipient_id: b }] : []);
    });
  }

  it("numbers rows of several existing conversations, interleaved in one statement, each from its own last seq in request order", async () => {
    const [a, x, y, z] = ["a", "x", "y", "z"].map(uniqueId) as [string, string, string, string];
    // Histories of 1, 3 and 2 messages.
    for (const [to, n] of [[x, 1], [y, 3], [z, 2]] as const) {
      for (let i = 0; i < n; i++) await appendBatch(t.main, [text(a, to)], { hot: t.hot });
    }
    const batch = [x, y, x, z, y, x].map((to, i) => text(a, to, uniqueId("c"), `m${i}`));
    const { result, statements } = await log.during(() => appendBatch(t.main, batch, { hot: t.hot }));
    expect(statements).to.deep.equal(["ticks_append_plain"]);
    expect(result.map((r) => value(r).message.seq)).to.deep.equal([2, 4, 3, 3, 5, 4]);
    for (const [to, last] of [[x, 4], [y, 5], [z, 3]] as const) {
      const [conversation] = await conversationOf(a, to);
      expect(Number(conversation.last_seq), to).to.equal(last);
      const { rows } = await t.pg.query(`SELECT seq::int AS seq FROM messages WHERE conversation_id = $1 ORDER BY seq`, [conversation.conversation_id]);
      expect(rows.map((r) => r.seq), "gap-free").to.deep.equal(Array.from({ length: last }, (_, i) => i + 1));
    }
  });

  it("answers a batch mixing new pairs, a known pair and a retry of a first contact: one write, then the retry's original read by its key", async () => {
    const [a, c, d, e] = ["a", "c", "d", "e"].map(uniqueId) as [string, string, string, string];
    const known = value((await appendBatch(t.main, [text(a, c)], { hot: t.hot }))[0]).message;
    const firstToD = text(a, d);
    const original = value((await appendBatch(t.main, [firstToD], { hot: t.hot }))[0]).message;

    const batch = [
      text(a, e, uniqueId("c"), "e1"),
      text(a, c, uniqueId("c"), "known"),
      { ...text(a, d, firstToD.clientMsgId, "retry") },
      text(e, a, uniqueId("c"), "e2"),
      text(a, e, uniqueId("c"), "e3"),
      text(d, e, uniqueId("c"), "de"),
    ];
    const { result, statements } = await log.during(() => appendBatch(t.main, batch, { hot: t.hot }));
    // The write reaches only the retry's idempotency key: a join to messages would set up a
    // scan of every day partition in every execution. A batch without retries is the write alone.
    expect(statements).to.deep.equal(["ticks_append_plain", "ticks_find_stored"]);
    const [e1, k, retry, e2, e3, de] = result.map(value) as AppendResult[];

    const withE = e1!.message.conversationId;
    expect([e1, e2, e3].map((r) => [r!.duplicate, r!.message.conversationId, r!.message.seq])).to.deep.equal([
      [false, withE, 1],
      [false, withE, 2],
      [false, withE, 3],
    ]);
    expect([k!.duplicate, k!.message.conversationId, k!.message.seq]).to.deep.equal([false, known.conversationId, 2]);
    expect(retry!.duplicate).to.equal(true);
    expect(retry!.message).to.deep.include({ id: original.id, seq: 1, content: "hi", conversationId: original.conversationId });
    expect([de!.duplicate, de!.message.seq]).to.deep.equal([false, 1]);
    expect((e2 as { recipients: string[] }).recipients).to.deep.equal([a]);
    expect((e3 as { recipients: string[] }).recipients).to.deep.equal([e]);

    const [conversation] = await conversationOf(a, e);
    expect(Number(conversation.last_seq)).to.equal(3);
    expect(conversation.created_by).to.equal(a);
    expect(new Date(conversation.last_message_at).getTime()).to.equal(batch[4]!.createdAt.getTime());
    const rows = await t.pg.query(
      `SELECT m.seq::int AS seq, d.recipient_id FROM messages m JOIN message_delivery d USING (message_id)
       WHERE m.conversation_id = $1 ORDER BY d.delivery_id`,
      [withE],
    );
    expect(rows.rows, "delivery rows follow seq").to.deep.equal([
      { seq: 1, recipient_id: e },
      { seq: 2, recipient_id: a },
      { seq: 3, recipient_id: e },
    ]);
    expect(await conversationOf(a, d)).to.have.length(1);
    const stored = await t.pg.query(`SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1 AND client_msg_id = $2`, [a, firstToD.clientMsgId]);
    expect(stored.rows[0].n).to.equal(1);
  });

  it("creates the conversation in the full statement too (a batch with an entry), and still checks the entry", async () => {
    const [a, b, f] = ["a", "b", "f"].map(uniqueId) as [string, string, string];
    const target = value((await appendBatch(t.main, [text(a, b)], { hot: t.hot }))[0]).message;
    const at = new Date();
    const reaction: AppendRequest = {
      kind: "reaction", id: messageIdAt(at), from: b, clientMsgId: uniqueId("r"), refId: target.id, content: "👍", createdAt: at, windowMs: null,
    };
    const { result, statements } = await log.during(() => appendBatch(t.main, [text(a, f), reaction], { hot: t.hot, pushDelayMs: 1_000 }));
    expect(statements.filter(isWrite)).to.deep.equal(["ticks_append_push"]);
    expect(statements.filter(isCreateDirect)).to.deep.equal([]);
    const [first, reacted] = result.map(value) as AppendResult[];
    expect(first!.message.seq).to.equal(1);
    expect(reacted!.message).to.include({ kind: "reaction", conversationId: target.conversationId, seq: 2 });
    const { rows } = await t.pg.query(`SELECT reactions FROM messages WHERE message_id = $1`, [target.id]);
    expect(rows[0].reactions).to.deep.equal({ [b]: "👍" });
    expect(await conversationOf(a, f)).to.have.length(1);
  });

  it("falls back to createDirect and a second write when another node creates the pair meanwhile", async () => {
    const a = uniqueId("a");
    const b = uniqueId("b");
    const other = new Client({ connectionString: t.db.url });
    await other.connect();
    try {
      // Another node's creation, not committed yet: this statement's snapshot does not see
      // it, and its ON CONFLICT waits for it, then does nothing.
      await other.query("BEGIN");
      const { rows } = await other.query(
        `INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by)
         VALUES (gen_random_uuid(), 'direct', $1, now(), $2) RETURNING conversation_id`,
        [directKey(a, b), b],
      );
      await other.query(`INSERT INTO conversation_members (conversation_id, user_id, joined_at) VALUES ($1, $2, now()), ($1, $3, now())`, [
        rows[0].conversation_id, a, b,
      ]);
      const running = log.during(() => appendBatch(t.main, [text(a, b)], { hot: t.hot }));
      await waitFor(async () => {
        const w = await t.pg.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        return w.rowCount! > 0;
      }, "the write waiting on the uncommitted conversation");
      await other.query("COMMIT");
      const { result, statements } = await running;
      expect(statements.filter((s) => isWrite(s) || isCreateDirect(s)).map((s) => (isWrite(s) ? "write" : "create"))).to.deep.equal([
        "write",
        "create",
        "write",
      ]);
      const stored = value(result[0]);
      expect(stored.message).to.include({ conversationId: rows[0].conversation_id, seq: 1 });
      expect((stored as { recipients: string[] }).recipients).to.deep.equal([b]);
      expect(await conversationOf(a, b)).to.have.length(1);
    } finally {
      await other.end();
    }
  });

  it("gives concurrent first contacts of one pair from two stores (two nodes' pools and lanes) one conversation, seq 1..n, each message once", async () => {
    const stores = [0, 1].map(() => {
      const ownMain = createDatabase({ kind: "postgres", url: t.db.url } as never);
      const ownHot = createHotPathDatabase({ kind: "postgres", url: t.db.url } as never, ownMain, 4);
      return { store: new SqlMessageStore(ownMain, { hotPath: ownHot, appendLanes: 4 }), close: () => Promise.all([ownHot.destroy(), ownMain.destroy()]) };
    });
    try {
      for (let round = 0; round < 8; round++) {
        const a = uniqueId("a");
        const b = uniqueId("b");
        const sends: Promise<AppendResult>[] = [];
        const ids: string[] = [];
        for (let k = 0; k < 6; k++) {
          const fromA = text(a, b, `a-${k}`);
          const fromB = text(b, a, `b-${k}`);
          ids.push(fromA.id, fromB.id);
          // Each message to both stores at once (a retry racing itself across nodes), each side from both.
          sends.push(stores[k % 2]!.store.append(fromA), stores[(k + 1) % 2]!.store.append({ ...fromA, id: messageIdAt(fromA.createdAt) }));
          sends.push(stores[(k + 1) % 2]!.store.append(fromB), stores[k % 2]!.store.append({ ...fromB, id: messageIdAt(fromB.createdAt) }));
        }
        const replies = await Promise.all(sends);
        const conversations = await conversationOf(a, b);
        expect(conversations, `round ${round}: one conversation`).to.have.length(1);
        const id = conversations[0].conversation_id;
        for (let i = 0; i < replies.length; i += 2) {
          const [x, y] = [replies[i]!, replies[i + 1]!];
          expect([x.duplicate, y.duplicate].sort(), "one stored, one answered as its duplicate").to.deep.equal([false, true]);
          expect(x.message.id).to.equal(y.message.id);
          expect(x.message.conversationId).to.equal(id);
        }
        const { rows } = await t.pg.query(`SELECT seq::int AS seq, client_msg_id FROM messages WHERE conversation_id = $1 ORDER BY seq`, [id]);
        expect(rows.map((r) => r.seq), "gap-free").to.deep.equal(Array.from({ length: 12 }, (_, i) => i + 1));
        expect(new Set(rows.map((r) => r.client_msg_id)).size, "each message once").to.equal(12);
        expect(Number(conversations[0].last_seq)).to.equal(12);
        const members = await t.pg.query(`SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id`, [id]);
        expect(members.rows.map((r) => r.user_id)).to.deep.equal([a, b].sort());
        const delivery = await t.pg.query(
          `SELECT count(*)::int AS n FROM message_delivery d JOIN messages m USING (message_id)
           WHERE m.conversation_id = $1 AND d.recipient_id <> m.from_user_id`,
          [id],
        );
        expect(delivery.rows[0].n, "one delivery row per message, to the peer").to.equal(12);
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

describe("first contact: live, backlog and conversation:list", function () {
  this.timeout(30_000);
  const t = useServerSuite();

  it("delivers a first message live at seq 1 and lists the conversation for both, unread for the recipient", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await t.device(a).connectSynced();
    const bob = await t.device(b).connectSynced();
    const sent = await alice.send(b, "first");
    expect(sent.seq).to.equal(1);
    await waitFor(() => bob.live.length === 1, "live first message");
    expect(bob.live[0]).to.deep.equal(sent);
    const { rows } = await t.pg.query(`SELECT count(*)::int AS n FROM conversations WHERE direct_key = $1`, [directKey(a, b)]);
    expect(rows[0].n).to.equal(1);
    const bobs = await bob.request("conversation:list", {});
    expectOk(bobs);
    expect(bobs.conversations).to.have.length(1);
    expect(bobs.conversations[0]).to.deep.include({ id: sent.conversationId, kind: "direct", lastSeq: 1, unread: 1 });
    const alices = await alice.request("conversation:list", {});
    expectOk(alices);
    expect(alices.conversations.map((c) => [c.id, c.unread, c.members])).to.deep.equal([[sent.conversationId, 0, [a, b].sort()]]);
  });

  it("delivers a first message to an offline recipient from the backlog, with its unread count", async () => {
    const a = uniqueId("alice");
    const c = uniqueId("carol");
    const alice = await t.device(a).connectSynced();
    const sent: Message[] = [await alice.send(c, "one"), await alice.send(c, "two")];
    expect(sent.map((m) => m.seq)).to.deep.equal([1, 2]);
    const carol = await t.device(c).connectSynced();
    expect(carol.backlogPages.flatMap((p) => p.messages.map((m) => m.id)), "from the backlog").to.deep.equal(sent.map((m) => m.id));
    expect(carol.received.map((m) => m.id)).to.deep.equal(sent.map((m) => m.id));
    const list = await carol.request("conversation:list", {});
    expectOk(list);
    expect(list.conversations.map((x) => [x.id, x.lastSeq, x.unread])).to.deep.equal([[sent[0]!.conversationId, 2, 2]]);
  });
});

describe("first contact from two nodes at once (two servers, one database)", function () {
  this.timeout(60_000);
  const t = useTwoNodesOnPostgres({ APPEND_LANES: "2" });

  it("one conversation, gap-free seq, each message stored once", async () => {
    for (let round = 0; round < 3; round++) {
      const a = uniqueId("a");
      const b = uniqueId("b");
      const alice0 = await t.device(0, a).connectSynced();
      const alice1 = await t.device(1, a).connectSynced();
      const bob1 = await t.device(1, b).connectSynced();
      const send = (d: typeof alice0, to: string, clientMsgId: string) =>
        d.request("message:send", { clientMsgId, to, content: clientMsgId });
      const replies = await Promise.all(
        Array.from({ length: 5 }, (_, k) => [
          send(alice0, b, `a${k}`),
          send(alice1, b, `a${k}`),
          send(bob1, a, `b${k}`),
        ]).flat(),
      );
      for (const r of replies) expectOk(r);
      const { rows: conversations } = await t.pg.query(`SELECT conversation_id FROM conversations WHERE direct_key = $1`, [directKey(a, b)]);
      expect(conversations).to.have.length(1);
      const { rows } = await t.pg.query(`SELECT seq::int AS seq, client_msg_id FROM messages WHERE conversation_id = $1 ORDER BY seq`, [
        conversations[0].conversation_id,
      ]);
      expect(rows.map((r) => r.seq)).to.deep.equal(Array.from({ length: 10 }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.client_msg_id)).size).to.equal(10);
      await waitFor(() => bob1.received.length === 5, "bob got alice's five");
    }
  });
});
