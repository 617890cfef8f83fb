import { expect } from "chai";
import type { Message } from "../src/protocol";
import { directKey } from "../src/messaging/routing";
import { laneOf } from "../src/storage/append/lanes";
import type { Device } from "./helpers/device";
import { uniqueId } from "./helpers/ids";
import { expectOk } from "./helpers/replies";
import { useServerSuite } from "./helpers/serverSuite";

const LANES = 4;

type SendReply = { ok: true; message: Message; duplicate: boolean } | { ok: false; error: { code: string; message: string } };

/** Recipients of `from` whose first direct messages go to pairwise different lanes, one per lane. */
function recipientsInEveryLane(from: string): string[] {
  const byLane = new Map<number, string>();
  while (byLane.size < LANES) {
    const to = uniqueId("r");
    const lane = laneOf(`direct ${directKey(from, to)}`, LANES);
    if (!byLane.has(lane)) byLane.set(lane, to);
  }
  return [...byLane.values()];
}

const laneOfConversation = (id: string) => laneOf(`id ${id}`, LANES);

/**
 * Write lanes (APPEND_LANES): appends run in several group commits at once, one per share
 * of the conversations. One conversation keeps its order and its gap-free seq; a duplicate
 * racing itself across lanes is still stored once; a lane that waits or fails holds only
 * its own conversations.
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
    const otherTargets = recipientsInEveryLane(other);

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
    // One lane runs one batch at a time: later seqs never come from an earlier transaction.
    const txs = rows.map((r) => Number(r.tx));
    expect(txs, "seq order is commit order").to.deep.equal([...txs].sort((a, b) => a - b));
  });

  it("stores a (sender, clientMsgId) sent at once to conversations of different lanes exactly once", async () => {
    const a = uniqueId("a");
    const one = await t.device(a, { deviceId: "one" }).connect();
    const two = await t.device(a, { deviceId: "two" }).connect();
    const [r0, r1, r2, r3] = recipientsInEveryLane(a) as [string, string, string, string];
    const MESSAGES = 20;
    const rounds = await Promise.all(
      Array.from({ length: MESSAGES }, (_, k) => {
        const clientMsgId = `dup-${k}`;
        // First messages (no conversation yet), in four lanes, from two sockets; r0 from both.
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

  /** A direct conversation per lane, each with one message already. */
  async function conversationsInEveryLane(d: Device): Promise<string[]> {
    const byLane = new Map<number, string>();
    while (byLane.size < LANES) {
      const message = await d.send(uniqueId("p"), "first");
      const lane = laneOfConversation(message.conversationId);
      if (!byLane.has(lane)) byLane.set(lane, message.conversationId);
    }
    return [...byLane.values()];
  }

  it("lets the other lanes commit while one lane's batch waits for a lock", async () => {
    const a = await t.device(uniqueId("a")).connect();
    const [stuck, ...others] = await conversationsInEveryLane(a);
    const lock = await t.pg.query("BEGIN").then(() =>
      t.pg.query(`SELECT 1 FROM conversations WHERE conversation_id = $1 FOR UPDATE`, [stuck]),
    );
    expect(lock.rowCount).to.equal(1);
    let stuckReply: SendReply | null = null;
    const waiting = send(a, { conversationId: stuck! }, uniqueId("w")).then((r) => (stuckReply = r));
    try {
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

  it("fails only the failing lane's batch: the other lanes' sends are stored, and the failed one took no seq", async () => {
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

describe("laneOf", () => {
  it("maps a key to one lane, always, and spreads keys over every lane", () => {
    const keys = Array.from({ length: 4000 }, (_, i) => `direct u${i} v${i}`);
    const counts = new Array(LANES).fill(0) as number[];
    for (const key of keys) {
      const lane = laneOf(key, LANES);
      expect(laneOf(key, LANES)).to.equal(lane);
      counts[lane]!++;
    }
    for (const n of counts) expect(n).to.be.within(800, 1200);
    expect(laneOf("anything", 1)).to.equal(0);
  });
});
