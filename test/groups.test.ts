import { expect } from "chai";
import type { ConversationSummary, Message, TypingEvent } from "../src/protocol";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { useTwoNodesOnPostgres } from "./helpers/twoNodesOnPostgres";
import { expectError, expectOk } from "./helpers/replies";

/**
 * Groups and typing on two nodes joined by Redis: members are spread over both, so every
 * fan-out crosses the adapter.
 */
describe("groups and typing (two nodes through Redis)", function () {
  this.timeout(60_000);
  const t = useTwoNodesOnPostgres();
  const device = t.device;
  const createGroup = async (creator: Device, title: string, members: string[]): Promise<string> => {
    const reply = await creator.request("group:create", { title, members });
    if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
    return reply.conversationId;
  };
  const sendTo = async (from: Device, conversationId: string, content: string): Promise<Message> => {
    const reply = await from.request("message:send", { clientMsgId: uniqueId("c"), conversationId, content });
    if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
    return reply.message;
  };
  const counts = async () =>
    (
      await t.pg.query(
        "SELECT (SELECT count(*) FROM messages)::int AS messages, (SELECT count(*) FROM message_delivery)::int AS deliveries",
      )
    ).rows[0];


  it("delivers a 5-member group live to the online, by backlog to the offline, with per-member receipts", async () => {
    const [a, b, c, d, e] = ["alice", "bob", "carol", "dave", "erin"].map(uniqueId) as [string, string, string, string, string];
    const alice = await device(0, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const carol = await device(0, c).connectSynced();
    const announced: ConversationSummary[] = [];
    bob.socket.on("conversation:new", (conv) => announced.push(conv));
    const toCreator: ConversationSummary[] = [];
    alice.socket.on("conversation:new", (conv) => toCreator.push(conv));

    const groupId = await createGroup(alice, "  Friday plans ", [b, c, d, e]);
    await waitFor(() => announced.length === 1, "conversation:new on another node");
    expect(announced[0]).to.deep.include({
      id: groupId,
      kind: "group",
      title: "Friday plans",
      lastSeq: 0,
      unread: 0,
      lastMessage: null,
    });
    expect(announced[0]!.members).to.deep.equal([a, b, c, d, e].sort());
    // The creator's own devices are told too (the protocol: every member's devices).
    await waitFor(() => toCreator.length === 1, "conversation:new to the creator");
    expect(toCreator[0]).to.deep.equal(announced[0]);

    const m = await sendTo(alice, groupId, "pizza?");
    expect(m).to.deep.include({ to: null, seq: 1, conversationId: groupId, from: a });
    await waitFor(() => bob.live.length === 1 && carol.live.length === 1, "live to the online members");
    const { rows } = await t.pg.query("SELECT recipient_id FROM message_delivery WHERE message_id = $1 ORDER BY 1", [m.id]);
    expect(rows.map((r) => r.recipient_id)).to.deep.equal([b, c, d, e].sort());

    // Dave and Erin were offline: they see the group in their list and get the backlog.
    const dave = await device(1, d).connectSynced();
    const erin = await device(0, e).connectSynced();
    for (const late of [dave, erin]) {
      expect(late.received.map((x) => x.id)).to.deep.equal([m.id]);
      const list = await late.request("conversation:list", {});
      expectOk(list);
      expect(list.conversations[0]).to.deep.include({ id: groupId, kind: "group", unread: 1, lastSeq: 1 });
    }
    await waitFor(() => new Set(alice.statuses.filter((s) => s.status === "delivered").map((s) => s.by)).size === 4, "4 delivered");
    expect(alice.statuses.filter((s) => s.status === "delivered").map((s) => s.by).sort()).to.deep.equal([b, c, d, e].sort());

    for (const reader of [bob, erin]) await reader.request("message:read", { messageIds: [m.id] });
    await waitFor(() => alice.statuses.filter((s) => s.status === "read").length === 2, "2 read");
    expect(alice.statuses.filter((s) => s.status === "read").map((s) => s.by).sort()).to.deep.equal([b, e].sort());
    const list = await alice.request("conversation:list", {});
    expectOk(list);
    expect(list.conversations.find((x) => x.id === groupId)).to.deep.include({ title: "Friday plans", unread: 0 });
  });

  it("keeps seq gap-free when several members on both nodes send at once", async () => {
    const users = ["alice", "bob", "carol", "dave"].map(uniqueId);
    const members = await Promise.all(users.map((u, i) => device(i, u).connectSynced()));
    const groupId = await createGroup(members[0]!, "busy", users.slice(1));
    const sent = await Promise.all(Array.from({ length: 80 }, (_, i) => sendTo(members[i % 4]!, groupId, `m${i}`)));
    expect(sent.map((m) => m.seq).sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 80 }, (_, i) => i + 1));
    // Each member receives the others' messages; seq tells the order even when live delivery interleaves.
    await waitFor(() => members.every((m, i) => m.received.length === 80 - sent.filter((s) => s.from === users[i]).length), "fan-out");
  });

  it("answers group retries with the original, alone or in one batch with direct sends, new sends and refusals", async () => {
    const [a, b, c] = [uniqueId("ga"), uniqueId("gb"), uniqueId("gc")];
    const alice = await device(0, a).connectSynced();
    const outsider = await device(1, uniqueId("out")).connectSynced();
    const group = await createGroup(alice, "retries", [b, c]);
    const clientMsgId = uniqueId("retry");
    const first = await alice.request("message:send", { clientMsgId, conversationId: group, content: "once" });
    expect(first.ok && !first.duplicate).to.equal(true);
    const before = await counts();
    // One event-loop tick: a group retry, a direct message, a new group message, a direct
    // retry of a message not stored yet (twice), and an outsider refused.
    const directId = uniqueId("d");
    const [retry, direct, fresh, twiceA, twiceB, refused] = await Promise.all([
      alice.request("message:send", { clientMsgId, conversationId: group, content: "changed" }),
      alice.request("message:send", { clientMsgId: uniqueId("c"), to: b, content: "direct" }),
      alice.request("message:send", { clientMsgId: uniqueId("c"), conversationId: group, content: "new" }),
      alice.request("message:send", { clientMsgId: directId, to: c, content: "twice" }),
      alice.request("message:send", { clientMsgId: directId, to: c, content: "twice" }),
      outsider.request("message:send", { clientMsgId: uniqueId("c"), conversationId: group, content: "no" }),
    ]);
    expect(retry.ok && retry.duplicate && retry.message).to.deep.equal(first.ok && first.message);
    expect(direct.ok && !direct.duplicate && direct.message.to).to.equal(b);
    expect(fresh.ok && !fresh.duplicate && fresh.message.seq).to.equal(2);
    expect(twiceA.ok && twiceB.ok && twiceA.message.id === twiceB.message.id).to.equal(true);
    expect(refused).to.deep.include({ ok: false });
    // New: direct (1 delivery row), group (2), the one "twice" (1).
    const after = await counts();
    expect(after.messages - before.messages).to.equal(3);
    expect(after.deliveries - before.deliveries).to.equal(4);
    // A later retry of the direct one, on the other node, is still answered with the original.
    const again = await device(1, a).connectSynced();
    const late = await again.request("message:send", { clientMsgId: directId, to: c, content: "twice" });
    expect(late.ok && late.duplicate && late.message.id).to.equal(twiceA.ok && twiceA.message.id);
  });

  it("refuses non-members: send, history and typing, and stores nothing", async () => {
    const [a, b, c] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const alice = await device(0, a).connectSynced();
    const mallory = await device(1, uniqueId("mallory")).connectSynced();
    const groupId = await createGroup(alice, "private", [b, c]);
    const before = await counts();
    const send = await mallory.request("message:send", { clientMsgId: uniqueId("c"), conversationId: groupId, content: "let me in" });
    expect(send).to.deep.include({ ok: false });
    expectError(send, "FORBIDDEN");
    const history = await mallory.request("message:history", { conversationId: groupId });
    expectError(history, "FORBIDDEN");
    const typing = await mallory.request("typing", { conversationId: groupId, typing: true });
    expectError(typing, "FORBIDDEN");
    expect(await counts()).to.deep.equal(before);
  });

  it("validates group:create: 2-GROUP_MAX_MEMBERS (1024) members in all, valid ids, the creator counted once", async () => {
    const a = uniqueId("alice");
    const alice = await device(0, a).connectSynced();
    const bad = async (members: unknown) => {
      const reply = (await alice.raw("group:create", { title: "t", members })) as { ok: boolean; error?: { code: string } };
      return reply.ok ? "ok" : reply.error!.code;
    };
    expect(await bad([a])).to.equal("BAD_REQUEST"); // only the creator
    expect(await bad([])).to.equal("BAD_REQUEST");
    expect(await bad(["no spaces allowed"])).to.equal("BAD_REQUEST");
    expect(await bad(Array.from({ length: 1024 }, (_, i) => `u${i}`))).to.equal("BAD_REQUEST"); // 1025 with the creator
    expect(await bad(Array.from({ length: 1023 }, (_, i) => `u${i}`))).to.equal("ok");
    const dup = await alice.request("group:create", { title: "dups", members: [a, "x1", "x1"] });
    expectOk(dup);
    const list = await alice.request("conversation:list", {});
    const group = list.ok ? list.conversations.find((c) => dup.ok && c.id === dup.conversationId) : undefined;
    expect(group?.members).to.deep.equal([a, "x1"].sort());
  });

  it("relays typing to the other members' devices on both nodes, not to the sender's, and stores nothing", async () => {
    const [a, b, c] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const alicePhone = await device(0, a).connectSynced();
    const aliceLaptop = await device(1, a).connectSynced();
    const bob = await device(1, b).connectSynced();
    const carol = await device(0, c).connectSynced();
    const groupId = await createGroup(alicePhone, "typing", [b, c]);
    const seen = new Map<Device, TypingEvent[]>();
    for (const d of [alicePhone, aliceLaptop, bob, carol]) {
      seen.set(d, []);
      d.socket.on("typing", (event) => seen.get(d)!.push(event));
    }
    const before = await counts();
    expect(await alicePhone.request("typing", { conversationId: groupId, typing: true })).to.deep.equal({ ok: true });
    await waitFor(() => seen.get(bob)!.length === 1 && seen.get(carol)!.length === 1, "typing relayed");
    expect(seen.get(bob)![0]).to.deep.equal({ conversationId: groupId, userId: a, typing: true });
    await alicePhone.request("typing", { conversationId: groupId, typing: false });
    await waitFor(() => seen.get(carol)!.length === 2, "typing stopped");
    expect(seen.get(carol)![1]!.typing).to.equal(false);
    await quiet();
    expect(seen.get(alicePhone)).to.deep.equal([]);
    expect(seen.get(aliceLaptop)).to.deep.equal([]);
    expect(await counts()).to.deep.equal(before);
  });
});
