import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import { uniqueId } from "./helpers/device";
import { urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";
import { expectError, expectOk } from "./helpers/replies";

describe("message:send", () => {
  const suite = useServerSuite();
  const device = (userId: string) => suite.device(userId).connectSynced();

  it("acknowledges only after the message is committed, with its persisted id", async () => {
    const alice = await device(uniqueId("alice"));
    const bob = uniqueId("bob");
    const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to: bob, content: "hi" });
    if (!reply.ok) throw new Error(reply.error.message);
    // Another connection sees the row the moment the ack arrives: it was committed first.
    const { rows } = await suite.pg.query("SELECT * FROM messages WHERE message_id = $1", [reply.message.id]);
    expect(rows).to.have.length(1);
    expect(rows[0].content).to.equal("hi");
    expect(rows[0].from_user_id).to.equal(alice.socket.auth && (alice.socket.auth as { userId: string }).userId);
    const delivery = await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1 AND recipient_id = $2", [
      reply.message.id,
      bob,
    ]);
    expect(delivery.rows).to.deep.equal([{ status: "sent" }]);
    expect(reply.duplicate).to.equal(false);
    expect(reply.message).to.include({ seq: 1, to: bob, content: "hi" });
    expect(reply.message.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7/); // UUIDv7
    // A direct conversation gets an id of its own: clients take it from the ack, never guess it.
    expect(reply.message.conversationId).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(reply.message.conversationId).to.not.equal(reply.message.id);
    const created = Date.parse(reply.message.createdAt);
    expect(Date.parse(reply.message.expiresAt) - created).to.equal(30 * 24 * 3600 * 1000);
  });

  it("answers a retry with the original message and stores nothing new", async () => {
    const aliceId = uniqueId("alice");
    const alice = await device(aliceId);
    const bob = uniqueId("bob");
    const clientMsgId = uuidv4();
    const first = await alice.request("message:send", { clientMsgId, to: bob, content: "once" });
    const again = await alice.request("message:send", { clientMsgId, to: bob, content: "changed on retry" });
    expectOk(first, "the first send");
    expectOk(again, "the retry");
    expect(again.duplicate).to.equal(true);
    expect(again.message).to.deep.equal(first.message);
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [aliceId]);
    expect(rows[0].n).to.equal(1);
    // Another sender's identical clientMsgId is unrelated.
    const carol = await device(uniqueId("carol"));
    const other = await carol.request("message:send", { clientMsgId, to: bob, content: "mine" });
    expectOk(other, "carol's send");
    expect(other.duplicate, "carol's send is not a duplicate").to.equal(false);
    expect(other.message.id, "carol's message").to.not.equal(first.message.id);
  });

  it("stores one message when the same retry arrives concurrently", async () => {
    const aliceId = uniqueId("alice");
    const alice = await device(aliceId);
    const clientMsgId = uuidv4();
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => alice.request("message:send", { clientMsgId, to: "bob-race", content: "x" })),
    );
    const ids = new Set(replies.map((r) => (r.ok ? r.message.id : "error")));
    expect([...ids]).to.have.length(1);
    expect(replies.filter((r) => r.ok && !r.duplicate)).to.have.length(1);
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [aliceId]);
    expect(rows[0].n).to.equal(1);
  });

  it("gives concurrent sends in one conversation seq 1..N with no gap", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a);
    const bob = await device(b);
    const sends = Array.from({ length: 60 }, (_, i) =>
      i % 2 === 0
        ? alice.request("message:send", { clientMsgId: `a-${i}`, to: b, content: `a${i}` })
        : bob.request("message:send", { clientMsgId: `b-${i}`, to: a, content: `b${i}` }),
    );
    const replies = await Promise.all(sends);
    const seqs = replies.map((r) => (r.ok ? r.message.seq : -1)).sort((x, y) => x - y);
    expect(seqs).to.deep.equal(Array.from({ length: 60 }, (_, i) => i + 1));
    const conversations = new Set(replies.map((r) => (r.ok ? r.message.conversationId : "")));
    expect(conversations.size).to.equal(1);
  });

  it("takes the sender from the authenticated socket, never from the payload", async () => {
    const aliceId = uniqueId("alice");
    const alice = await device(aliceId);
    const reply = (await alice.raw("message:send", {
      clientMsgId: uuidv4(),
      to: "bob-forged",
      content: "who am I",
      from: "mallory",
    })) as { ok: boolean; message: { from: string } };
    expectOk(reply);
    expect(reply.message.from).to.equal(aliceId);
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = 'mallory'");
    expect(rows[0].n).to.equal(0);
  });

  it("commits concurrent sends together (group commit) and settles each request on its own", async () => {
    const a = uniqueId("alice");
    const alice = await device(a);
    const before = await batchStats();
    const missing = "01890000-0000-7000-8000-000000000000";
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i === 7
          ? alice.request("message:send", { clientMsgId: `g-${i}`, conversationId: missing, content: "nowhere" })
          : alice.request("message:send", { clientMsgId: `g-${i}`, to: `peer-${i % 4}-${a}`, content: `m${i}` }),
      ),
    );
    const after = await batchStats();
    expect(after.sum - before.sum).to.equal(40);
    expect(after.count - before.count, "round trips for 40 sends").to.be.lessThan(40);
    expect(replies[7]).to.deep.equal({ ok: false, error: { code: "NOT_FOUND", message: "no such conversation" } });
    const ok = replies.filter((r) => r.ok);
    expect(ok).to.have.length(39);
    // Four conversations, each with its own gap-free seq.
    const byConversation = new Map<string, number[]>();
    for (const r of ok) if (r.ok) byConversation.set(r.message.conversationId, [...(byConversation.get(r.message.conversationId) ?? []), r.message.seq]);
    expect(byConversation.size).to.equal(4);
    for (const seqs of byConversation.values()) {
      expect(seqs.sort((x, y) => x - y)).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => i + 1));
    }
  });

  it("refuses text PostgreSQL cannot store as sent (NUL, lone surrogates) with BAD_REQUEST", async () => {
    const aliceId = uniqueId("alice");
    const alice = await device(aliceId);
    for (const content of ["a\u0000b", "half \uD83D", "\uDE00 reversed"]) {
      const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to: "bob-text", content });
      expectError(reply, "BAD_REQUEST", JSON.stringify(content));
    }
    const group = await alice.request("group:create", { title: "nul\u0000title", members: ["bob-text"] });
    expectError(group, "BAD_REQUEST");
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [aliceId]);
    expect(rows[0].n).to.equal(0);
    const emoji = await alice.request("message:send", { clientMsgId: uuidv4(), to: "bob-text", content: "ok 😀" });
    expectOk(emoji);
    expect(emoji.message.content).to.equal("ok 😀");
  });

  async function batchStats(): Promise<{ sum: number; count: number }> {
    const text = await (await fetch(`${urlOf(suite.server)}/metrics`)).text();
    const read = (name: string) => Number(new RegExp(`^${name}\\{kind="append"\\} (\\d+)`, "m").exec(text)?.[1] ?? 0);
    return { sum: read("ticks_write_batch_size_sum"), count: read("ticks_write_batch_size_count") };
  }
});
