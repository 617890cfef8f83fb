import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import type { Message, Reply, SendResult } from "../src/protocol";
import { applyLog } from "./helpers/entries";
import { uniqueId, waitFor, type Device } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";

/** The acknowledged message, or a failed test naming the error. */
function ok(reply: Reply<SendResult>): Message {
  if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
  return reply.message;
}

describe("edits, deletes and reactions", () => {
  const suite = useServerSuite();
  const device = (userId: string) => suite.device(userId).connectSynced();
  const send = async (d: Device, to: string, content: string) =>
    ok(await d.request("message:send", { clientMsgId: uuidv4(), to, content }));
  const sendTo = async (d: Device, conversationId: string, content: string) =>
    ok(await d.request("message:send", { clientMsgId: uuidv4(), conversationId, content }));
  const edit = (d: Device, messageId: string, content: string, clientMsgId = uuidv4()) =>
    d.request("message:edit", { clientMsgId, messageId, content });
  const del = (d: Device, messageId: string, clientMsgId = uuidv4()) =>
    d.request("message:delete", { clientMsgId, messageId });
  const react = (d: Device, messageId: string, emoji: string, clientMsgId = uuidv4()) =>
    d.request("message:react", { clientMsgId, messageId, emoji });
  const history = async (d: Device, conversationId: string) => {
    const reply = await d.request("message:history", { conversationId, limit: 100 });
    if (!reply.ok) throw new Error(reply.error.message);
    return reply.messages;
  };
  const group = async (creator: Device, members: string[]) => {
    const reply = await creator.request("group:create", { title: "entries", members });
    if (!reply.ok) throw new Error(reply.error.message);
    return reply.conversationId;
  };
  const row = async (id: string) =>
    (await suite.pg.query("SELECT * FROM messages WHERE message_id = $1", [id])).rows[0] as Record<string, unknown>;

  it("an edit reaches the recipient live and from the backlog; history shows the new content with editedAt", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const alice = await device(a);
    const bob = await device(b);

    // Live.
    const text = await send(alice, b, "helo");
    await waitFor(() => bob.live.some((m) => m.id === text.id), "bob's text");
    const entry = ok(await edit(alice, text.id, "hello"));
    expect(entry).to.include({ kind: "edit", refId: text.id, content: "hello", seq: 2, conversationId: text.conversationId });
    expect(entry).to.include({ editedAt: null, deletedAt: null });
    expect(entry.reactions).to.deep.equal([]);
    expect(entry.expiresAt, "an entry expires with its message").to.equal(text.expiresAt);
    await waitFor(() => bob.live.some((m) => m.id === entry.id), "bob's live edit");
    expect(bob.live.find((m) => m.id === entry.id)).to.deep.equal(entry);
    // Receipted like a text message.
    await waitFor(() => alice.statuses.some((s) => s.messageIds.includes(entry.id) && s.status === "delivered"), "receipt");

    const stored = await row(text.id);
    expect(stored.content).to.equal("hello");
    expect((stored.edited_at as Date).toISOString()).to.equal(entry.createdAt);
    expect((await row(entry.id)).content).to.equal("hello");

    const [page] = [await history(bob, text.conversationId)];
    expect(page.map((m) => m.kind)).to.deep.equal(["text", "edit"]);
    expect(page[0]).to.include({ id: text.id, content: "hello", editedAt: entry.createdAt, deletedAt: null });

    // Backlog: carol is offline through the send and both edits.
    const offline = await send(alice, c, "frist");
    const e1 = ok(await edit(alice, offline.id, "first"));
    const e2 = ok(await edit(alice, offline.id, "first!"));
    const carol = await device(c);
    const got = carol.received;
    expect(got.map((m) => [m.kind, m.seq])).to.deep.equal([
      ["text", 1],
      ["edit", 2],
      ["edit", 3],
    ]);
    // The text comes in its current state; the entries as they were made.
    expect(got[0]).to.include({ content: "first!", editedAt: e2.createdAt });
    expect(got.slice(1)).to.deep.equal([e1, e2]);
    expect(applyLog(got).get(offline.id)).to.deep.equal((await history(carol, offline.conversationId))[0]);
  });

  it("a delete empties the content in the database, the edits' included, for every member", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const alice = await device(a);
    const bob = await device(b);
    const conversationId = await group(alice, [b, c]);
    const text = await sendTo(alice, conversationId, "my secret");
    const e1 = ok(await edit(alice, text.id, "my secret, corrected"));
    ok(await react(bob, text.id, "😮"));
    ok(await edit(alice, text.id, "my secret, corrected again"));
    const gone = ok(await del(alice, text.id));
    expect(gone).to.include({ kind: "delete", refId: text.id, content: "", seq: 5 });

    // What an operator sees.
    const { rows } = await suite.pg.query(
      "SELECT kind, content, deleted_at, reactions FROM messages WHERE message_id = $1 OR ref_id = $1 ORDER BY seq",
      [text.id],
    );
    expect(rows.map((r) => [r.kind, r.content])).to.deep.equal([
      ["text", ""],
      ["edit", ""],
      ["reaction", ""],
      ["edit", ""],
      ["delete", ""],
    ]);
    expect(rows[0].deleted_at.toISOString()).to.equal(gone.createdAt);
    expect(rows[0].reactions).to.deep.equal({});
    const leftovers = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE content LIKE '%secret%'");
    expect(leftovers.rows[0].n).to.equal(0);

    // Bob saw it live; carol, offline, gets everything erased from the backlog.
    await waitFor(() => bob.live.some((m) => m.id === gone.id), "bob's delete");
    expect(bob.live.find((m) => m.id === gone.id)).to.deep.equal(gone);
    const carol = await device(c);
    expect(carol.received.map((m) => m.content)).to.deep.equal(["", "", "", "", ""]);
    expect(carol.received[0]).to.include({ deletedAt: gone.createdAt, content: "" });
    expect(carol.received[0].reactions).to.deep.equal([]);
    for (const member of [alice, bob, carol]) {
      const page = await history(member, conversationId);
      expect(page.map((m) => m.content)).to.deep.equal(["", "", "", "", ""]);
      expect(page[0]).to.include({ deletedAt: gone.createdAt, editedAt: page[3]!.createdAt });
      expect(applyLog(member === bob ? [text, ...bob.live] : page).get(text.id)).to.deep.equal(page[0]);
    }
    expect(e1.content, "the edit's ack carried the text when it was made").to.equal("my secret, corrected");

    // Deleting again answers the first delete entry, however often.
    const again = await del(alice, text.id);
    expect(again.ok && again.duplicate && again.message).to.deep.equal(gone);
    const last = await suite.pg.query("SELECT last_seq FROM conversations WHERE conversation_id = $1", [conversationId]);
    expect(Number(last.rows[0].last_seq)).to.equal(5);
  });

  it("reactions replace each other per user and can be removed; history matches what clients applied", async () => {
    const [a, b, c, d] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol"), uniqueId("dave")];
    const alice = await device(a);
    const bob = await device(b);
    const carol = await device(c);
    const dave = await device(d);
    const conversationId = await group(alice, [b, c, d]);
    const text = await sendTo(alice, conversationId, "lunch?");
    ok(await react(bob, text.id, "👍"));
    ok(await react(carol, text.id, "❤️"));
    ok(await react(bob, text.id, "😂")); // replaces bob's 👍
    ok(await react(carol, text.id, "")); // removes carol's
    ok(await react(alice, text.id, "😂"));
    ok(await react(dave, text.id, "👍"));
    const last = ok(await react(dave, text.id, "👍")); // the same again: still one

    const expected = [
      { emoji: "👍", userIds: [d] },
      { emoji: "😂", userIds: [a, b].sort() },
    ].sort((x, y) => (x.emoji < y.emoji ? -1 : 1));
    const page = await history(carol, conversationId);
    expect(page[0]!.reactions).to.deep.equal(expected);
    expect(page.filter((m) => m.kind === "reaction").map((m) => m.content)).to.deep.equal(["👍", "❤️", "😂", "", "😂", "👍", "👍"]);
    expect((await row(text.id)).reactions).to.deep.equal({ [a]: "😂", [b]: "😂", [d]: "👍" });

    // A member who was online applies the live entries to the text as it first arrived.
    await waitFor(() => carol.live.some((m) => m.id === last.id), "carol's live reactions");
    expect(applyLog(carol.live).get(text.id)).to.deep.equal(page[0]);
    // So does one who reads the log from history.
    expect(applyLog(page).get(text.id)).to.deep.equal(page[0]);
    const list = await carol.request("conversation:list", {});
    if (!list.ok) throw new Error(list.error.message);
    const summary = list.conversations.find((x) => x.id === conversationId)!;
    expect(summary.lastMessage, "lastMessage is the text, in its current state").to.deep.equal(page[0]);
    expect(summary.lastSeq).to.equal(8);
  });

  it("entries from two devices in a group interleave with gap-free seq", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const phone = await suite.device(a, { deviceId: "phone" }).connectSynced();
    const laptop = await suite.device(a, { deviceId: "laptop" }).connectSynced();
    const bob = await device(b);
    const conversationId = await group(phone, [b, c]);
    const texts = await Promise.all(Array.from({ length: 6 }, (_, i) => sendTo(i % 2 ? phone : laptop, conversationId, `t${i}`)));
    const work: Promise<Reply<SendResult>>[] = [];
    for (let round = 0; round < 5; round++) {
      for (const [i, t] of texts.entries()) {
        work.push(react(phone, t.id, ["👍", "🎉", ""][round % 3]!));
        work.push(react(laptop, t.id, ["🔥", ""][round % 2]!));
        work.push(react(bob, t.id, "👀"));
        if (round < 3) work.push(edit(i % 2 ? laptop : phone, t.id, `t${i} v${round}`));
        work.push(sendTo(round % 2 ? phone : bob, conversationId, `r${round}-${i}`).then((message) => ({ ok: true, message, duplicate: false })));
      }
    }
    const replies = await Promise.all(work);
    replies.push(await del(laptop, texts[0]!.id));
    const seqs = replies.map((r) => ok(r).seq).concat(texts.map((t) => t.seq)).sort((x, y) => x - y);
    expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => i + 1));

    const all: Message[] = [];
    for (let after = 0; ; ) {
      const reply = await bob.request("message:history", { conversationId, afterSeq: after, limit: 100 });
      if (!reply.ok) throw new Error(reply.error.message);
      all.push(...reply.messages);
      if (!reply.hasMore) break;
      after = reply.messages.at(-1)!.seq;
    }
    expect(all.map((m) => m.seq)).to.deep.equal(seqs);
    // Whatever the interleaving, the log replays to the server's state.
    const replayed = applyLog(all);
    for (const m of all.filter((x) => x.kind === "text")) expect(replayed.get(m.id)).to.deep.equal(m);
    expect(replayed.get(texts[0]!.id)).to.include({ content: "" });

    // Like a send, an entry reaches the sender's other devices, not the one that made it.
    const bell = ok(await react(phone, texts[1]!.id, "🛎️"));
    await waitFor(() => laptop.live.some((m) => m.id === bell.id), "the laptop's copy");
    await waitFor(() => bob.live.some((m) => m.id === bell.id), "bob's copy");
    expect(phone.live.some((m) => m.id === bell.id)).to.equal(false);
  });

  it("unread counts text only, and read receipts of entries change nothing", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await device(a);
    const text = await send(alice, b, "one");
    const e = ok(await edit(alice, text.id, "one!"));
    const r = ok(await react(alice, text.id, "✅"));
    const bob = await device(b);
    expect(bob.received).to.have.length(3);
    const unread = async () => {
      const list = await bob.request("conversation:list", {});
      if (!list.ok) throw new Error(list.error.message);
      return list.conversations.find((x) => x.id === text.conversationId)!;
    };
    expect((await unread()).unread).to.equal(1);
    expect((await unread()).lastMessage).to.include({ id: text.id, content: "one!", editedAt: e.createdAt });

    const entriesRead = await bob.request("message:read", { messageIds: [e.id, r.id] });
    expect(entriesRead).to.deep.equal({ ok: true, updated: 0 });
    const { rows } = await suite.pg.query(
      "SELECT status, read_at FROM message_delivery WHERE message_id = ANY($1::uuid[])",
      [[e.id, r.id]],
    );
    expect(rows).to.deep.equal([
      { status: "delivered", read_at: null },
      { status: "delivered", read_at: null },
    ]);
    expect(await bob.request("message:read", { messageIds: [text.id] })).to.deep.equal({ ok: true, updated: 1 });
    expect((await unread()).unread).to.equal(0);
    await waitFor(() => alice.statuses.some((s) => s.status === "read"), "read status");
    expect(alice.statuses.filter((s) => s.status === "read").flatMap((s) => s.messageIds)).to.deep.equal([text.id]);
  });

  it("answers a retry of each action with the original entry and stores it once", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await device(a);
    const bob = await device(b);
    const text = await send(alice, b, "retry me");
    const ids = { edit: uuidv4(), react: uuidv4(), del: uuidv4() };
    const first = {
      edit: ok(await edit(alice, text.id, "retried", ids.edit)),
      react: ok(await react(bob, text.id, "🔁", ids.react)),
    };
    // Retries, also concurrent ones, even with other content: the original, duplicate: true.
    const [editAgain, reactAgain] = await Promise.all([
      edit(alice, text.id, "something else", ids.edit),
      react(bob, text.id, "❌", ids.react),
    ]);
    expect(editAgain).to.deep.equal({ ok: true, message: first.edit, duplicate: true });
    expect(reactAgain).to.deep.equal({ ok: true, message: first.react, duplicate: true });
    const deletes = await Promise.all([del(alice, text.id, ids.del), del(alice, text.id, ids.del)]);
    const gone = ok(deletes[0]!);
    expect(deletes.map((d) => d.ok && d.duplicate).sort()).to.deep.equal([false, true]);
    expect(await del(alice, text.id, ids.del)).to.deep.equal({ ok: true, message: gone, duplicate: true });
    const counts = await suite.pg.query(
      "SELECT client_msg_id, count(*)::int AS n FROM messages WHERE ref_id = $1 GROUP BY client_msg_id ORDER BY 1",
      [text.id],
    );
    expect(counts.rows).to.deep.equal(
      [ids.edit, ids.react, ids.del].sort().map((id) => ({ client_msg_id: id, n: 1 })),
    );
    // The retried reaction did not replace anything: the message was deleted after it anyway,
    // and before that it was 🔁 (the ack of the retry says so).
    expect(reactAgain.ok && reactAgain.message.content).to.equal("🔁");
  });
});
