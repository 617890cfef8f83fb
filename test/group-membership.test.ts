import { expect } from "chai";
import type { ConversationSummary, Message, TypingEvent } from "../src/protocol";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { expectError, expectOk } from "./helpers/replies";
import { useTwoNodesOnPostgres } from "./helpers/twoNodesOnPostgres";

/**
 * Members come and go (group:add/remove/leave/update/role) on two nodes joined by Redis:
 * every case puts the acting admin and the affected member on different nodes, so each
 * change and each fan-out crosses the adapter. Visibility is checked in every path a
 * message takes: live, backlog, history, conversation:list, typing, reads and reactions.
 */
describe("group membership changes (two nodes through Redis)", function () {
  this.timeout(60_000);
  const MAX = 6;
  const t = useTwoNodesOnPostgres({ GROUP_MAX_MEMBERS: String(MAX) });
  const device = t.device;
  const users = (...names: string[]) => names.map(uniqueId);
  const createGroup = async (creator: Device, members: string[], title = "g"): Promise<string> => {
    const reply = await creator.request("group:create", { title, members });
    expectOk(reply, "group:create");
    return reply.conversationId;
  };
  const change = async <E extends "group:add" | "group:remove" | "group:leave" | "group:update" | "group:role">(
    who: Device,
    event: E,
    payload: Record<string, unknown>,
  ): Promise<Message> => {
    const reply = (await who.raw(event, { clientMsgId: uniqueId("g"), ...payload })) as { ok: boolean; message: Message };
    expectOk(reply, event);
    return reply.message;
  };
  const summary = async (who: Device, id: string): Promise<ConversationSummary | undefined> => {
    const list = await who.request("conversation:list", {});
    expectOk(list);
    return list.conversations.find((c) => c.id === id);
  };
  const history = async (who: Device, conversationId: string, extra: Record<string, number> = {}) => {
    const reply = await who.request("message:history", { conversationId, limit: 100, ...extra });
    expectOk(reply, "message:history");
    return reply.messages;
  };
  /** Everything a test could change, so "changes nothing" is one comparison. */
  const snapshot = async () =>
    (
      await t.pg.query(`SELECT
        (SELECT count(*) FROM messages)::int AS messages,
        (SELECT count(*) FROM message_delivery)::int AS deliveries,
        (SELECT count(*) FILTER (WHERE status = 'read') FROM message_delivery)::int AS reads,
        (SELECT string_agg(conversation_id || ':' || user_id || ':' || role || ':' || from_seq, ',' ORDER BY conversation_id, user_id)
           FROM conversation_members) AS members,
        (SELECT string_agg(conversation_id || ':' || user_id || ':' || until_seq, ',' ORDER BY conversation_id, user_id)
           FROM conversation_departures) AS departures,
        (SELECT string_agg(conversation_id || ':' || coalesce(title, '') || ':' || last_seq || ':' || members_version, ','
           ORDER BY conversation_id) FROM conversations) AS conversations,
        (SELECT string_agg(message_id || reactions::text, ',' ORDER BY message_id) FROM messages) AS reactions`)
    ).rows[0];


  it("an added member gets conversation:new and the entry, then sees the group from that entry on", async () => {
    const [a, b, c] = users("alice", "bob", "carol");
    const alice = await device(0, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const group = await createGroup(alice, [b], "before");
    await alice.send({ conversationId: group }, "before carol");
    const carol = await device(1, c).connectSynced();
    const announced: ConversationSummary[] = [];
    carol.socket.on("conversation:new", (s) => announced.push(s));

    const entry = await change(alice, "group:add", { conversationId: group, userIds: [c] });
    expect(entry).to.deep.include({ kind: "group", seq: 2, from: a, content: "", to: null });
    expect(entry.group).to.deep.equal({ action: "add", userIds: [c], title: null, role: null });
    await waitFor(() => announced.length === 1 && carol.live.some((m) => m.id === entry.id), "carol's conversation:new and entry");
    expect(announced[0]).to.deep.include({ id: group, member: true, lastSeq: 2, unread: 0, lastMessage: null, admins: [a] });
    expect(announced[0]!.members).to.deep.equal([a, b, c].sort());
    await waitFor(() => bob.live.some((m) => m.id === entry.id), "bob's copy of the entry");

    const after = await alice.send({ conversationId: group }, "after carol");
    await waitFor(() => carol.live.some((m) => m.id === after.id), "carol gets what follows live");
    expect((await history(carol, group)).map((m) => m.seq)).to.deep.equal([2, 3]);
    expect(await summary(carol, group)).to.deep.include({ member: true, lastSeq: 3, admins: [a] });
    expect((await summary(carol, group))!.lastMessage?.id).to.equal(after.id);
  });

  it("a removed member gets the entry and what came before it, and nothing after, in any path", async () => {
    const [a, b, c] = users("alice", "bob", "carol");
    const alice = await device(0, a).connectSynced();
    const carol = await device(0, c).connectSynced();
    const group = await createGroup(alice, [b, c]);
    // bob is offline: what is stored before his removal waits for him in the backlog.
    const before = await carol.send({ conversationId: group }, "before the removal");
    const removal = await change(alice, "group:remove", { conversationId: group, userId: b });
    expect(removal.group).to.deep.equal({ action: "remove", userIds: [b], title: null, role: null });
    const afterwards = await carol.send({ conversationId: group }, "after the removal");
    const { rows } = await t.pg.query("SELECT message_id FROM message_delivery WHERE recipient_id = $1 ORDER BY delivery_id", [b]);
    expect(rows.map((r) => r.message_id)).to.deep.equal([before.id, removal.id]);

    const bob = await device(1, b).connectSynced();
    expect(bob.received.map((m) => m.id)).to.deep.equal([before.id, removal.id]);
    // Live: nothing more reaches him, whichever node it is sent on.
    const typing: TypingEvent[] = [];
    bob.socket.on("typing", (e) => typing.push(e));
    await carol.send({ conversationId: group }, "still after");
    expectOk(await carol.request("typing", { conversationId: group, typing: true }));
    await quiet(400);
    expect(bob.received.map((m) => m.id)).to.deep.equal([before.id, removal.id]);
    expect(typing).to.deep.equal([]);

    // History ends at the entry that removed him; asking past it is FORBIDDEN.
    expect((await history(bob, group)).map((m) => m.seq)).to.deep.equal([1, 2]);
    expect((await history(bob, group, { afterSeq: 0 })).map((m) => m.seq)).to.deep.equal([1, 2]);
    expectError(await bob.request("message:history", { conversationId: group, afterSeq: removal.seq }), "FORBIDDEN");
    const mine = await summary(bob, group);
    expect(mine).to.deep.include({ member: false, lastSeq: removal.seq, members: [], admins: [] });
    expect(mine!.lastMessage?.id).to.equal(before.id);
    expect(mine!.unread).to.equal(1);
    expect(afterwards.seq).to.be.greaterThan(removal.seq);

    // A rename after he left is not his to see.
    await change(alice, "group:update", { conversationId: group, title: "after bob" });
    expect(await summary(bob, group)).to.deep.include({ title: "g", member: false });

    // His sends, reactions, reads and typing there are refused, and change nothing.
    const snap = await snapshot();
    expectError(await bob.request("message:send", { clientMsgId: uniqueId("c"), conversationId: group, content: "hi" }), "FORBIDDEN");
    expectError(await bob.request("message:react", { clientMsgId: uniqueId("c"), messageId: before.id, emoji: "👍" }), "FORBIDDEN");
    expectError(await bob.request("message:read", { messageIds: [before.id] }), "FORBIDDEN");
    expectError(await bob.request("typing", { conversationId: group, typing: true }), "FORBIDDEN");
    expect(await snapshot()).to.deep.equal(snap);
  });

  it("someone added again sees from the new entry on, not what was said while away", async () => {
    const [a, b] = users("alice", "bob");
    const alice = await device(0, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const group = await createGroup(alice, [b]);
    await alice.send({ conversationId: group }, "one");
    const removal = await change(alice, "group:remove", { conversationId: group, userId: b });
    await waitFor(() => bob.live.some((m) => m.id === removal.id), "the removal, live");
    const away = await alice.send({ conversationId: group }, "while bob is away");
    const readd = await change(alice, "group:add", { conversationId: group, userIds: [b] });
    await waitFor(() => bob.live.some((m) => m.id === readd.id), "the re-add, live");
    const back = await alice.send({ conversationId: group }, "welcome back");
    await waitFor(() => bob.live.some((m) => m.id === back.id), "what follows, live");
    expect(bob.received.map((m) => m.id)).to.not.include(away.id);
    expect((await history(bob, group)).map((m) => m.id)).to.deep.equal([readd.id, back.id]);
    expect(await summary(bob, group)).to.deep.include({ member: true, lastSeq: back.seq, unread: 1 });
    // He may act again.
    await bob.send({ conversationId: group }, "thanks");
  });

  it("renames, changes roles, and hands the admin role on when the last admin leaves", async () => {
    const [a, b, c] = users("alice", "bob", "carol");
    const alice = await device(0, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const group = await createGroup(alice, [b, c]);
    const title = await change(alice, "group:update", { conversationId: group, title: "  New name " });
    expect(title.group).to.deep.equal({ action: "title", userIds: [], title: "New name", role: null });
    expect(await summary(bob, group)).to.deep.include({ title: "New name", admins: [a] });
    const role = await change(alice, "group:role", { conversationId: group, userId: c, role: "admin" });
    expect(role.group).to.deep.equal({ action: "role", userIds: [c], title: null, role: "admin" });
    expect((await summary(bob, group))!.admins).to.deep.equal([a, c].sort());
    await change(alice, "group:role", { conversationId: group, userId: c, role: "member" });
    // alice is the last admin; bob and carol joined with her: the user id decides.
    const leave = await change(alice, "group:leave", { conversationId: group });
    const successor = [b, c].sort()[0]!;
    expect(leave.group).to.deep.equal({ action: "leave", userIds: [a, successor], title: null, role: "admin" });
    expect(await summary(bob, group)).to.deep.include({ admins: [successor], members: [b, c].sort() });
    expect(await summary(alice, group)).to.deep.include({ member: false, lastSeq: leave.seq });
    await waitFor(() => bob.live.some((m) => m.id === leave.id), "bob gets the leave entry");
  });

  it("answers a retried change with its first entry, even after it took effect", async () => {
    const [a, b, c] = users("alice", "bob", "carol");
    const alice = await device(0, a).connectSynced();
    const group = await createGroup(alice, [b]);
    const clientMsgId = uniqueId("add");
    const first = await alice.request("group:add", { clientMsgId, conversationId: group, userIds: [c] });
    expectOk(first);
    const snap = await snapshot();
    const again = await device(1, a).connectSynced();
    const retry = await again.request("group:add", { clientMsgId, conversationId: group, userIds: [c] });
    expectOk(retry);
    expect(retry).to.deep.include({ duplicate: true });
    expect(retry.message).to.deep.equal(first.message);
    // Concurrent retries of a leave: one entry.
    const bob = await device(1, b).connectSynced();
    const leaveId = uniqueId("leave");
    const leaves = await Promise.all([0, 1, 2].map(() => bob.request("group:leave", { clientMsgId: leaveId, conversationId: group })));
    leaves.forEach((r) => expectOk(r));
    expect(new Set(leaves.map((r) => r.ok && r.message.id)).size).to.equal(1);
    expect(leaves.filter((r) => r.ok && !r.duplicate)).to.have.length(1);
    const after = await snapshot();
    expect(after.messages).to.equal(snap.messages + 1);
  });

  it("refuses every bad change with the protocol's error, changing nothing", async () => {
    const [a, b, c, d] = users("alice", "bob", "carol", "dave");
    const alice = await device(0, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const carol = await device(1, c).connectSynced();
    const group = await createGroup(alice, [b, c]);
    const said = await alice.send({ conversationId: group }, "hello");
    await change(alice, "group:remove", { conversationId: group, userId: c });
    const direct = (await alice.send(d, "a direct one")).conversationId;
    const unknown = "01900000-0000-7000-8000-000000000000";
    const id = () => uniqueId("bad");
    const snap = await snapshot();
    const cases: [string, Device, string, Record<string, unknown>, string][] = [
      ["adding past GROUP_MAX_MEMBERS", alice, "group:add", { conversationId: group, userIds: ["x1", "x2", "x3", "x4", "x5"] }, "BAD_REQUEST"],
      ["adding a malformed id", alice, "group:add", { conversationId: group, userIds: ["no spaces"] }, "BAD_REQUEST"],
      ["adding nobody", alice, "group:add", { conversationId: group, userIds: [] }, "BAD_REQUEST"],
      ["adding only members", alice, "group:add", { conversationId: group, userIds: [b] }, "BAD_REQUEST"],
      ["adding 257 at once", alice, "group:add", { conversationId: group, userIds: Array.from({ length: 257 }, (_, i) => `u${i}`) }, "BAD_REQUEST"],
      ["a non-admin adding", bob, "group:add", { conversationId: group, userIds: [d] }, "FORBIDDEN"],
      ["a non-admin removing", bob, "group:remove", { conversationId: group, userId: a }, "FORBIDDEN"],
      ["a non-admin renaming", bob, "group:update", { conversationId: group, title: "mine" }, "FORBIDDEN"],
      ["a non-admin changing roles", bob, "group:role", { conversationId: group, userId: b, role: "admin" }, "FORBIDDEN"],
      ["a removed member adding", carol, "group:add", { conversationId: group, userIds: [d] }, "FORBIDDEN"],
      ["a removed member leaving", carol, "group:leave", { conversationId: group }, "FORBIDDEN"],
      ["removing a non-member", alice, "group:remove", { conversationId: group, userId: d }, "BAD_REQUEST"],
      ["removing a malformed id", alice, "group:remove", { conversationId: group, userId: "bad id" }, "BAD_REQUEST"],
      ["the last admin demoting themselves", alice, "group:role", { conversationId: group, userId: a, role: "member" }, "FORBIDDEN"],
      ["an unknown role", alice, "group:role", { conversationId: group, userId: b, role: "owner" }, "BAD_REQUEST"],
      ["an empty title", alice, "group:update", { conversationId: group, title: "  " }, "BAD_REQUEST"],
      ["a 101-character title", alice, "group:update", { conversationId: group, title: "t".repeat(101) }, "BAD_REQUEST"],
      ["adding to a direct conversation", alice, "group:add", { conversationId: direct, userIds: [b] }, "FORBIDDEN"],
      ["removing from a direct conversation", alice, "group:remove", { conversationId: direct, userId: d }, "FORBIDDEN"],
      ["leaving a direct conversation", alice, "group:leave", { conversationId: direct }, "FORBIDDEN"],
      ["renaming a direct conversation", alice, "group:update", { conversationId: direct, title: "x" }, "FORBIDDEN"],
      ["roles in a direct conversation", alice, "group:role", { conversationId: direct, userId: d, role: "admin" }, "FORBIDDEN"],
      ["an unknown conversation", alice, "group:leave", { conversationId: unknown }, "NOT_FOUND"],
      ["a malformed conversation id", alice, "group:leave", { conversationId: "nope" }, "BAD_REQUEST"],
      ["no clientMsgId", alice, "group:leave", { conversationId: group, clientMsgId: undefined }, "BAD_REQUEST"],
      ["a removed member sending", carol, "message:send", { conversationId: group, content: "hi" }, "FORBIDDEN"],
      ["a removed member reacting", carol, "message:react", { messageId: said.id, emoji: "👍" }, "FORBIDDEN"],
      ["a removed member reading", carol, "message:read", { messageIds: [said.id] }, "FORBIDDEN"],
      ["a removed member typing", carol, "typing", { conversationId: group, typing: true }, "FORBIDDEN"],
      ["a removed member asking past their window", carol, "message:history", { conversationId: group, afterSeq: 2 }, "FORBIDDEN"],
    ];
    for (const [what, who, event, payload, code] of cases) {
      const reply = await who.raw(event, { clientMsgId: id(), ...payload });
      expectError(reply, code, what);
    }
    expect(await snapshot()).to.deep.equal(snap);
  });
});
