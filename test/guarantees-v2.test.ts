import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import type { Message, Reply, SendResult } from "../src/protocol";
import { quiet, uniqueId, waitFor } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";

/** Guarantees of the v2 write path that no other suite proves (PROTOCOL.md v2). */

function ok(reply: Reply<SendResult>): Message {
  if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
  return reply.message;
}

describe("v2 guarantees", () => {
  const suite = useServerSuite();
  const deliveryRows = async (messageId: string) =>
    (
      await suite.pg.query("SELECT recipient_id, status FROM message_delivery WHERE message_id = $1 ORDER BY recipient_id", [
        messageId,
      ])
    ).rows;

  it("conversation:list's lastMessage is the deleted text: content \"\" with deletedAt, for every member", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b).connectSynced();
    const text = await alice.send(b, "regret this");
    ok(await alice.request("message:edit", { clientMsgId: uuidv4(), messageId: text.id, content: "regret this!" }));
    ok(await bob.request("message:react", { clientMsgId: uuidv4(), messageId: text.id, emoji: "👍" }));
    const gone = ok(await alice.request("message:delete", { clientMsgId: uuidv4(), messageId: text.id }));
    for (const member of [alice, bob]) {
      const list = await member.request("conversation:list", {});
      if (!list.ok) throw new Error(list.error.message);
      const summary = list.conversations.find((c) => c.id === text.conversationId)!;
      expect(summary.lastSeq).to.equal(gone.seq);
      expect(summary.lastMessage).to.include({ id: text.id, kind: "text", content: "", deletedAt: gone.createdAt });
      expect(summary.lastMessage!.reactions).to.deep.equal([]);
      const page = await member.request("message:history", { conversationId: text.conversationId, limit: 100 });
      if (!page.ok) throw new Error(page.error.message);
      expect(summary.lastMessage).to.deep.equal(page.messages[0]);
    }
  });

  it("the sender's own device confirming an edit entry moves no status; the recipient's receipt does", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const phone = await suite.device(a, { deviceId: "phone" }).connectSynced();
    const laptop = await suite.device(a, { deviceId: "laptop" }).connectSynced();
    const text = await phone.send(b, "helo");
    const entry = ok(await phone.request("message:edit", { clientMsgId: uuidv4(), messageId: text.id, content: "hello" }));
    await waitFor(() => laptop.live.some((m) => m.id === entry.id), "the laptop's own copy of the edit");
    // The laptop also tries to read its own user's entry: only the recipient moves a status.
    expect(await laptop.request("message:read", { messageIds: [entry.id, text.id] })).to.deep.equal({ ok: true, updated: 0 });
    await quiet();
    expect(await deliveryRows(entry.id)).to.deep.equal([{ recipient_id: b, status: "sent" }]);
    expect(await deliveryRows(text.id)).to.deep.equal([{ recipient_id: b, status: "sent" }]);
    expect(phone.statuses).to.deep.equal([]);
    expect(laptop.statuses).to.deep.equal([]);

    const bob = await suite.device(b).connectSynced();
    expect(bob.received.map((m) => m.id)).to.deep.equal([text.id, entry.id]);
    await waitFor(() => phone.statuses.some((s) => s.messageIds.includes(entry.id)), "the entry's delivered status");
    expect(await deliveryRows(entry.id)).to.deep.equal([{ recipient_id: b, status: "delivered" }]);
  });

  it("a delivered receipt after read, over the socket, leaves the status read and announces nothing", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const text = await alice.send(b, "read me first");
    // Bob reads it before confirming the backlog page that carries it.
    const bob = suite.device(b, { autoAck: false });
    bob.socket.on("message:backlog", (_page, ack) => {
      void bob.request("message:read", { messageIds: [text.id] }).then(() => ack());
    });
    await bob.connect();
    await waitFor(() => alice.statuses.some((s) => s.status === "read"), "read status");
    await waitFor(() => bob.syncs.length > 0, "sync:complete");
    await quiet();
    expect(alice.statuses.map((s) => s.status)).to.deep.equal(["read"]);
    const { rows } = await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1", [text.id]);
    expect(rows).to.deep.equal([{ status: "read" }]);
  });
  it("two concurrent first tries of one message:edit store one entry, answer it to both, and leave no seq gap", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const text = await alice.send(b, "race me");
    const clientMsgId = uuidv4();
    const replies = await Promise.all(
      [0, 1, 2].map(() => alice.request("message:edit", { clientMsgId, messageId: text.id, content: "raced" })),
    );
    const entries = replies.map(ok);
    expect(entries.map((e) => e.id)).to.deep.equal([entries[0]!.id, entries[0]!.id, entries[0]!.id]);
    expect(replies.map((r) => r.ok && r.duplicate).sort()).to.deep.equal([false, true, true]);
    expect(entries[0]).to.include({ kind: "edit", refId: text.id, seq: 2 });
    const stored = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE client_msg_id = $1", [clientMsgId]);
    expect(stored.rows[0].n).to.equal(1);
    const last = await suite.pg.query("SELECT last_seq FROM conversations WHERE conversation_id = $1", [text.conversationId]);
    expect(Number(last.rows[0].last_seq)).to.equal(2);
    const next = await alice.send(b, "after");
    expect(next.seq).to.equal(3);
  });
});
