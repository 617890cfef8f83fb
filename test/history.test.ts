import { expect } from "chai";
import type { Message } from "../src/protocol";
import { Device, uniqueId } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";

describe("message:history and conversation:list", () => {
  const suite = useServerSuite();
  const device = (userId: string) => suite.device(userId).connectSynced();
  const send = async (from: Device, to: string, content: string): Promise<Message> => {
    const reply = await from.request("message:send", { clientMsgId: uniqueId("c"), to, content });
    if (!reply.ok) throw new Error(reply.error.message);
    return reply.message;
  };

  it("pages a conversation by seq, ascending, in both directions", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a);
    const sent: Message[] = [];
    for (let i = 1; i <= 7; i++) sent.push(await send(alice, b, `m${i}`));
    const conversationId = sent[0]!.conversationId;
    const seqs = (r: { ok: boolean; messages?: Message[] }) => r.messages!.map((m) => m.seq);

    const latest = await alice.request("message:history", { conversationId, limit: 3 });
    expect(latest.ok && seqs(latest)).to.deep.equal([5, 6, 7]);
    expect(latest.ok && latest.hasMore).to.equal(true);
    const older = await alice.request("message:history", { conversationId, beforeSeq: 5, limit: 3 });
    expect(older.ok && seqs(older)).to.deep.equal([2, 3, 4]);
    const oldest = await alice.request("message:history", { conversationId, beforeSeq: 2, limit: 3 });
    expect(oldest.ok && seqs(oldest)).to.deep.equal([1]);
    expect(oldest.ok && oldest.hasMore).to.equal(false);

    const gap = await alice.request("message:history", { conversationId, afterSeq: 2, limit: 2 });
    expect(gap.ok && seqs(gap)).to.deep.equal([3, 4]);
    expect(gap.ok && gap.hasMore).to.equal(true);
    const between = await alice.request("message:history", { conversationId, afterSeq: 2, beforeSeq: 6 });
    expect(between.ok && seqs(between)).to.deep.equal([3, 4, 5]);
    expect(between.ok && between.hasMore).to.equal(false);
    const all = await alice.request("message:history", { conversationId });
    expect(all.ok && all.messages).to.deep.equal(sent);

    // The recipient is a member too, even before ever connecting.
    const bob = await device(b);
    const bobs = await bob.request("message:history", { conversationId, limit: 1 });
    expect(bobs.ok && bobs.messages[0]!.content).to.equal("m7");
  });

  it("lists the caller's conversations, most recently active first, with unread counts", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const c = uniqueId("carol");
    const bob = await device(b);
    const carol = await device(c);
    await send(bob, a, "from bob 1");
    await send(bob, a, "from bob 2");
    const last = await send(carol, a, "from carol");

    const alice = await device(a);
    const list = await alice.request("conversation:list", {});
    if (!list.ok) throw new Error(list.error.message);
    expect(list.conversations.map((c) => c.members)).to.deep.equal([[a, c].sort(), [a, b].sort()]);
    const [withCarol, withBob] = list.conversations;
    expect(withCarol).to.deep.include({ kind: "direct", title: null, lastSeq: 1, unread: 1, lastMessage: last });
    expect(withBob).to.deep.include({ kind: "direct", lastSeq: 2, unread: 2 });
    expect(withBob!.lastMessage!.content).to.equal("from bob 2");

    await alice.request("message:read", { messageIds: [last.id] });
    const after = await alice.request("conversation:list", {});
    expect(after.ok && after.conversations[0]!.unread).to.equal(0);
    // A sender has nothing unread in what they sent.
    const carols = await carol.request("conversation:list", {});
    expect(carols.ok && carols.conversations).to.have.length(1);
    expect(carols.ok && carols.conversations[0]!.unread).to.equal(0);
    // Someone with no conversations gets an empty list.
    const nobody = await device(uniqueId("nobody"));
    expect(await nobody.request("conversation:list", {})).to.deep.equal({ ok: true, conversations: [] });
  });

  it("uses the direct conversation by id as well as by recipient", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a);
    const first = await send(alice, b, "by user id");
    const reply = await alice.request("message:send", {
      clientMsgId: uniqueId("c"),
      conversationId: first.conversationId,
      content: "by conversation id",
    });
    expect(reply.ok && reply.message).to.deep.include({ seq: 2, to: b, conversationId: first.conversationId });
  });
});
