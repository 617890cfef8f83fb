import { expect } from "chai";
import type { AppendResult } from "../src/messaging/ports";
import { SqlMessageStore } from "../src/storage/SqlMessageStore";
import { useMigratedDatabase } from "./helpers/migratedDatabase";
import { textRequest } from "./helpers/appendRequests";
import type { Message } from "../src/protocol";
import type { Device } from "./helpers/device";
import { uniqueId } from "./helpers/ids";
import { expectOk } from "./helpers/replies";
import { useServerSuite } from "./helpers/serverSuite";

const LANES = 4;

type SendReply = { ok: true; message: Message; duplicate: boolean } | { ok: false; error: { code: string; message: string } };

/** New recipients of `from`, one per lane: first messages to each have keys of their own. */
const newRecipients = (from: string): string[] => Array.from({ length: LANES }, () => uniqueId(`r-${from}`));

/**
 * Write lanes (APPEND_LANES): up to that many append batches at once, never two with one
 * conversation's key. One conversation keeps its order and its gap-free seq; a duplicate
 * racing itself across batches is still stored once; a batch that waits holds up only its
 * own conversations, and one that fails on a request's data fails only that request.
 */
describe("write lanes (APPEND_LANES=4)", function () {
  this.timeout(60_000);
  const t = useServerSuite({ APPEND_LANES: String(LANES) });

  const send = (d: Device, target: { to: string } | { conversationId: string }, clientMsgId: string, content = "hi") =>
    d.request("message:send", { clientMsgId, ...target, content }) as Promise<SendReply>;

  it("keeps one conversation's seq gap-free and in commit order, each device's sends in order, while other conversations write", async () => {
    const owner = uniqueId("owner");
    const senders = [uniqueId("s1"), uniqueId("s2"), uniqueId("s3")];
    const creator = await t.device(owner).connect();
    const created = await creator.request("group:create", { title: "lanes", members: senders });
    expectOk(created);
    const group = created.conversationId;
    const devices = await Promise.all(
      senders.flatMap((s) => ["one", "two"].map((deviceId) => t.device(s, { deviceId }).connect())),
    );
    // Direct conversations of other senders, spread over every lane, written at the same time.
    const other = uniqueId("other");
    const otherDevice = await t.device(other).connect();
    const otherTargets = newRecipients(other);

    const PER_DEVICE = 25;
    const groupSends = devices.map((d, i) =>
      Promise.all(Array.from({ length: PER_DEVICE }, (_, k) => send(d, { conversationId: group }, `g${i}-${k}`))),
    );
    const directSends = otherTargets.map((to) =>
      Promise.all(Array.from({ length: 10 }, (_, k) => send(otherDevice, { to }, uniqueId(`d${k}`)))),
    );
    const [groupReplies, directReplies] = await Promise.all([Promise.all(groupSends), Promise.all(directSends)]);

    for (const replies of [...groupReplies, ...directReplies]) {
      const seqs = replies.map((r) => {
        expectOk(r);
        expect(r.duplicate).to.equal(false);
        return r.message.seq;
      });
      // Sent back to back on one socket: stored in the order sent.
      expect(seqs, "one device's seqs in send order").to.deep.equal([...seqs].sort((a, b) => a - b));
    }
    for (const replies of directReplies) expect(replies.map((r) => (r.ok ? r.message.seq : 0))).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    const { rows } = await t.pg.query<{ seq: number; tx: string }>(
      `SELECT m.seq::int AS seq, m.xmin::text AS tx FROM messages m WHERE m.conversation_id = $1 AND m.kind = 'text' ORDER BY m.seq`,
      [group],
    );
    const seqs = rows.map((r) => Number(r.seq));
    expect(seqs.length).to.equal(devices.length * PER_DEVICE);
    expect(seqs[seqs.length - 1]! - seqs[0]! + 1, "no gap").to.equal(seqs.length);
    // One key is in one batch at a time: later seqs never come from an earlier transaction.
    const txs = rows.map((r) => Number(r.tx));
    expect(txs, "seq order is commit order").to.deep.equal([...txs].sort((a, b) => a - b));
  });

  it("stores a (sender, clientMsgId) sent at once to conversations of different lanes exactly once", async () => {
    const a = uniqueId("a");
    const one = await t.device(a, { deviceId: "one" }).connect();
    const two = await t.device(a, { deviceId: "two" }).connect();
    const [r0, r1, r2, r3] = newRecipients(a) as [string, string, string, string];
    const MESSAGES = 20;
    const rounds = await Promise.all(
      Array.from({ length: MESSAGES }, (_, k) => {
        const clientMsgId = `dup-${k}`;
        // First messages (no conversation yet), four keys, from two sockets; r0 from both.
        return Promise.all([
          send(one, { to: r0 }, clientMsgId, "x"),
          send(two, { to: r0 }, clientMsgId, "x"),
          send(one, { to: r1 }, clientMsgId, "x"),
          send(two, { to: r2 }, clientMsgId, "x"),
          send(one, { to: r3 }, clientMsgId, "x"),
        ]);
      }),
    );
    for (const replies of rounds) {
      const oks = replies.map((r) => {
        expectOk(r);
        return r;
      });
      expect(oks.filter((r) => !r.duplicate), "one duplicate: false per message").to.have.length(1);
      expect(new Set(oks.map((r) => r.message.id)).size, "every copy answers the same message").to.equal(1);
    }
    const { rows } = await t.pg.query<{ client_msg_id: string; n: number }>(
      `SELECT client_msg_id, count(*)::int AS n FROM messages WHERE from_user_id = $1 GROUP BY client_msg_id`,
      [a],
    );
    expect(rows).to.have.length(MESSAGES);
    expect(rows.every((r) => r.n === 1), "one stored row per clientMsgId").to.equal(true);
  });

  /** LANES direct conversations, each with one message already. */
  async function conversationsInEveryLane(d: Device): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < LANES; i++) ids.push((await d.send(uniqueId("p"), "first")).conversationId);
    return ids;
  }

  it("lets other conversations commit while one batch waits for a lock", async () => {
    const a = await t.device(uniqueId("a")).connect();
    const [stuck, ...others] = await conversationsInEveryLane(a);
    const lock = await t.pg.query("BEGIN").then(() =>
      t.pg.query(`SELECT 1 FROM conversations WHERE conversation_id = $1 FOR UPDATE`, [stuck]),
    );
    expect(lock.rowCount).to.equal(1);
    let stuckReply: SendReply | null = null;
    const waiting = send(a, { conversationId: stuck! }, uniqueId("w")).then((r) => (stuckReply = r));
    try {
      // Its batch is in flight, waiting for the row lock, before the others are sent.
      for (let i = 0; ; i++) {
        const { rows } = await t.pg.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        if (rows.length > 0) break;
        if (i > 200) throw new Error("the send never waited for the lock");
        await new Promise((r) => setTimeout(r, 10));
      }
      const replies = await Promise.all(others.map((id) => send(a, { conversationId: id }, uniqueId("o"))));
      for (const r of replies) expectOk(r);
      expect(stuckReply, "the locked conversation's send still waits").to.equal(null);
    } finally {
      await t.pg.query("COMMIT");
    }
    await waiting;
    expectOk(stuckReply!);
    expect((stuckReply as SendReply & { ok: true }).message.seq).to.equal(2);
  });

  it("fails only the request whose data the statement refuses: the batch's other sends are stored, and the failed one took no seq", async () => {
    const a = await t.device(uniqueId("a")).connect();
    const [failing, ...others] = await conversationsInEveryLane(a);
    await t.pg.query(`CREATE FUNCTION lanes_test_refuse() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`);
    await t.pg.query(`CREATE TRIGGER lanes_test_refuse BEFORE INSERT ON messages FOR EACH ROW
      WHEN (NEW.conversation_id = '${failing}') EXECUTE FUNCTION lanes_test_refuse()`);
    try {
      const [failed, ...replies] = await Promise.all([
        send(a, { conversationId: failing! }, uniqueId("f")),
        ...others.map((id) => send(a, { conversationId: id }, uniqueId("o"))),
      ]);
      expect(failed!.ok).to.equal(false);
      expect((failed as SendReply & { ok: false }).error.code).to.equal("UNAVAILABLE");
      for (const r of replies) {
        expectOk(r);
        expect(r.message.seq).to.equal(2);
      }
    } finally {
      await t.pg.query(`DROP TRIGGER lanes_test_refuse ON messages`);
      await t.pg.query(`DROP FUNCTION lanes_test_refuse()`);
    }
    const after = await send(a, { conversationId: failing! }, uniqueId("f"));
    expectOk(after);
    expect(after.message.seq).to.equal(2);
  });
});

/**
 * The same at the store, with batches of at most 4 so that many run at once: a duplicate
 * racing itself in batches that are in flight together is stored once, and one
 * conversation's messages, spread over many batches, keep their order and a gap-free seq.
 */
describe("write lanes in one store (batches of 4, 4 at once)", function () {
  this.timeout(60_000);
  const t = useMigratedDatabase(LANES);
  let store: SqlMessageStore;
  let batches: number[];
  before(() => {
    store = new SqlMessageStore(t.main, { hotPath: t.hot, appendLanes: LANES, maxBatch: 4, onBatch: (kind, n) => kind === "append" && batches.push(n) });
  });

  const text = (from: string, to: string, clientMsgId: string) => textRequest(from, to, clientMsgId, "x");

  it("stores each (sender, clientMsgId) once when its copies go to four conversations in batches running at once", async () => {
    const a = uniqueId("a");
    for (let round = 0; round < 6; round++) {
      batches = [];
      const MESSAGES = 8;
      // Copy j of every message, then copy j + 1…: with batches of 4, message k's copies
      // land in batches k/4, 2 + k/4, 4 + k/4, 6 + k/4, in flight together (all keys differ).
      const replies = new Map<string, Promise<AppendResult>[]>();
      for (let copy = 0; copy < LANES; copy++) {
        for (let k = 0; k < MESSAGES; k++) {
          const clientMsgId = `dup-${round}-${k}`;
          replies.set(clientMsgId, [...(replies.get(clientMsgId) ?? []), store.append(text(a, uniqueId("peer"), clientMsgId))]);
        }
      }
      for (const copies of await Promise.all([...replies.values()].map((c) => Promise.all(c)))) {
        expect(copies.filter((r) => !r.duplicate), "one duplicate: false per message").to.have.length(1);
        expect(new Set(copies.map((r) => r.message.id)).size, "every copy answers the same message").to.equal(1);
      }
      expect(batches.length, "many batches").to.be.at.least((MESSAGES * LANES) / 4);
    }
    const { rows } = await t.main.raw(`SELECT client_msg_id, count(*)::int AS n FROM messages WHERE from_user_id = ? GROUP BY client_msg_id`, [a]);
    expect(rows).to.have.length(6 * 8);
    expect(rows.every((r: { n: number }) => r.n === 1), "one stored row per clientMsgId").to.equal(true);
  });

  it("keeps one conversation's messages in submit order over many batches, beside other conversations", async () => {
    batches = [];
    const a = uniqueId("a");
    const b = uniqueId("b");
    const others = newRecipients(a);
    const sends: Promise<AppendResult>[] = [];
    for (let k = 0; k < 40; k++) {
      sends.push(store.append(text(a, b, `m-${k}`)));
      for (const to of others) sends.push(store.append(text(a, to, `o-${k}-${to}`)));
    }
    const replies = await Promise.all(sends);
    const mine = replies.filter((r) => r.message.clientMsgId.startsWith("m-"));
    expect(mine.map((r) => r.message.seq)).to.deep.equal(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(mine.map((r) => r.message.clientMsgId)).to.deep.equal(Array.from({ length: 40 }, (_, i) => `m-${i}`));
    expect(Math.max(...batches)).to.equal(4);
  });
});
