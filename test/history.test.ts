import { expect } from "chai";
import type { Message } from "../src/protocol";
import { uniqueId } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";
import { expectOk } from "./helpers/replies";

describe("message:history and conversation:list", () => {
  const suite = useServerSuite();
  const device = (userId: string) => suite.device(userId).connectSynced();

  it("pages a conversation by seq, ascending, in both directions", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a);
    const sent: Message[] = [];
    for (let i = 1; i <= 7; i++) sent.push(await alice.send(b, `m${i}`));
    const conversationId = sent[0]!.conversationId;
    const seqs = (r: { ok: boolean; messages?: Message[] }) => r.messages!.map((m) => m.seq);

    const latest = await alice.request("message:history", { conversationId, limit: 3 });
    expectOk(latest);
    expect(seqs(latest)).to.deep.equal([5, 6, 7]);
    expect(latest.hasMore).to.equal(true);
    const older = await alice.request("message:history", { conversationId, beforeSeq: 5, limit: 3 });
    expectOk(older);
    expect(seqs(older)).to.deep.equal([2, 3, 4]);
    const oldest = await alice.request("message:history", { conversationId, beforeSeq: 2, limit: 3 });
    expectOk(oldest);
    expect(seqs(oldest)).to.deep.equal([1]);
    expect(oldest.hasMore).to.equal(false);

    const gap = await alice.request("message:history", { conversationId, afterSeq: 2, limit: 2 });
    expectOk(gap);
    expect(seqs(gap)).to.deep.equal([3, 4]);
    expect(gap.hasMore).to.equal(true);
    const between = await alice.request("message:history", { conversationId, afterSeq: 2, beforeSeq: 6 });
    expectOk(between);
    expect(seqs(between)).to.deep.equal([3, 4, 5]);
    expect(between.hasMore).to.equal(false);
    const all = await alice.request("message:history", { conversationId });
    expectOk(all);
    expect(all.messages).to.deep.equal(sent);

    // The recipient is a member too, even before ever connecting.
    const bob = await device(b);
    const bobs = await bob.request("message:history", { conversationId, limit: 1 });
    expectOk(bobs);
    expect(bobs.messages[0]!.content).to.equal("m7");
  });

  it("lists the caller's conversations, most recently active first, with unread counts", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const c = uniqueId("carol");
    const bob = await device(b);
    const carol = await device(c);
    await bob.send(a, "from bob 1");
    await bob.send(a, "from bob 2");
    const last = await carol.send(a, "from carol");

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
    expectOk(after);
    expect(after.conversations[0]!.unread).to.equal(0);
    // A sender has nothing unread in what they sent.
    const carols = await carol.request("conversation:list", {});
    expectOk(carols);
    expect(carols.conversations).to.have.length(1);
    expect(carols.conversations[0]!.unread).to.equal(0);
    // Someone with no conversations gets an empty list.
    const nobody = await device(uniqueId("nobody"));
    expect(await nobody.request("conversation:list", {})).to.deep.equal({ ok: true, conversations: [], hasMore: false, next: null });
  });

  it("uses the direct conversation by id as well as by recipient", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a);
    const first = await alice.send(b, "by user id");
    const reply = await alice.request("message:send", {
      clientMsgId: uniqueId("c"),
      conversationId: first.conversationId,
      content: "by conversation id",
    });
    expectOk(reply);
    expect(reply.message).to.deep.include({ seq: 2, to: b, conversationId: first.conversationId });
  });
});
