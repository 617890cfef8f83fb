import { expect } from "chai";
import type { Message } from "../src/protocol";
import { quiet, uniqueId, waitFor } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";
import { expectOk } from "./helpers/replies";

describe("delivery: live, backlog and receipts", () => {
  const suite = useServerSuite({ BACKLOG_PAGE_SIZE: "5", DELIVERY_ACK_TIMEOUT_MS: "500" });
  const device = suite.device;
  const statusOf = async (messageId: string, recipient: string) =>
    (
      await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1 AND recipient_id = $2", [
        messageId,
        recipient,
      ])
    ).rows[0]?.status;

  it("delivers live to every device of the recipient; a receipt marks it delivered and tells the sender", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    const phone = await device(b, { deviceId: "phone" }).connectSynced();
    const laptop = await device(b, { deviceId: "laptop" }).connectSynced();
    const message = await alice.send(b, "hello");
    await waitFor(() => phone.live.length === 1 && laptop.live.length === 1, "live message on both devices");
    expect(phone.live[0]).to.deep.equal(message);
    await waitFor(() => alice.statuses.length === 1, "delivered status");
    expect(alice.statuses[0]).to.include({ status: "delivered", by: b });
    expect(alice.statuses[0]!.messageIds).to.deep.equal([message.id]);
    expect(await statusOf(message.id, b)).to.equal("delivered");
    // Two devices confirmed; the status moved once.
    await quiet();
    expect(alice.statuses).to.have.length(1);
  });

  it("sends an offline user's messages as acknowledged pages, oldest first, then sync:complete", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    const sent: Message[] = [];
    for (let i = 0; i < 12; i++) sent.push(await alice.send(b, `m${i}`));
    expect(await statusOf(sent[0]!.id, b)).to.equal("sent");

    const bob = await device(b).connectSynced();
    expect(bob.backlogPages.map((p) => p.messages.length)).to.deep.equal([5, 5, 2]);
    expect(bob.backlogPages.map((p) => p.remaining)).to.deep.equal([true, true, false]);
    expect(bob.received.map((m) => m.seq)).to.deep.equal(sent.map((m) => m.seq));
    expect(bob.received.map((m) => m.id)).to.deep.equal(sent.map((m) => m.id));
    expect(bob.syncs).to.deep.equal([{ delivered: 12 }]);
    const events = bob.events.map((e) => e.event);
    expect(events.lastIndexOf("message:backlog")).to.be.lessThan(events.indexOf("sync:complete"));
    const { rows } = await suite.pg.query(
      "SELECT count(*)::int AS n FROM message_delivery WHERE recipient_id = $1 AND status = 'sent'",
      [b],
    );
    expect(rows[0].n).to.equal(0);
    await waitFor(() => alice.statuses.flatMap((s) => s.messageIds).length === 12, "12 delivered statuses");
    expect(alice.statuses.filter((s) => s.status !== "delivered" || s.by !== b), "statuses other than delivered by bob").to.deep.equal([]);
  });

  it("sends the next backlog page only after the previous one is acknowledged", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    for (let i = 0; i < 7; i++) await alice.send(b, `m${i}`);
    const bob = device(b, { autoAck: false });
    const acks: (() => void)[] = [];
    bob.socket.on("message:backlog", (_page, ack) => acks.push(ack));
    await bob.connect();
    await waitFor(() => bob.backlogPages.length === 1, "first page");
    await quiet(700); // longer than the ack timeout: the unacknowledged page is offered again, never the next
    expect(bob.backlogPages.map((p) => p.messages[0]!.content), "first message of every page").to.deep.equal(bob.backlogPages.map(() => "m0"));
    expect(bob.syncs).to.have.length(0);
    acks.at(-1)!();
    await waitFor(() => bob.backlogPages.some((p) => p.messages[0]!.content === "m5"), "second page");
    acks.at(-1)!();
    await waitFor(() => bob.syncs.length === 1, "sync:complete");
    expect(bob.received.map((m) => m.content)).to.deep.equal(["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
  });

  it("keeps a live message nobody confirmed as sent and redelivers it on reconnect", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    const silent = await device(b, { autoAck: false }).connectSynced();
    const message = await alice.send(b, "did you get this?");
    await waitFor(() => silent.live.length === 1, "live message");
    await quiet(800); // past DELIVERY_ACK_TIMEOUT_MS
    expect(await statusOf(message.id, b)).to.equal("sent");
    expect(alice.statuses).to.have.length(0);
    silent.close();

    const again = await device(b).connectSynced();
    expect(again.received.map((m) => m.id)).to.deep.equal([message.id]);
    expect(await statusOf(message.id, b)).to.equal("delivered");
    await waitFor(() => alice.statuses.length === 1, "delivered status");
  });

  it("holds live messages from a device until its backlog is drained, so it sees seq order", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    for (let i = 0; i < 6; i++) await alice.send(b, `old${i}`);
    const bob = device(b, { autoAck: false });
    const acks: (() => void)[] = [];
    bob.socket.on("message:backlog", (_page, ack) => acks.push(ack));
    await bob.connect();
    await waitFor(() => bob.backlogPages.length === 1, "first page");
    const fresh = await alice.send(b, "new while syncing");
    await quiet();
    expect(bob.live).to.have.length(0);
    while (bob.syncs.length === 0) {
      acks.splice(0).forEach((ack) => ack());
      await quiet(50);
    }
    const seqs = bob.received.map((m) => m.seq);
    expect(seqs).to.deep.equal([...seqs].sort((x, y) => x - y));
    expect(bob.received.map((m) => m.id)).to.include(fresh.id);
  });

  it("tells every device of the sender about read receipts; statuses only move forward", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const phone = await device(a, { deviceId: "phone" }).connectSynced();
    const laptop = await device(a, { deviceId: "laptop" }).connectSynced();
    const bob = await device(b).connectSynced();
    const m1 = await phone.send(b, "one");
    const m2 = await phone.send(b, "two");
    await waitFor(() => phone.statuses.flatMap((s) => s.messageIds).length === 2, "delivered x2");

    const read = await bob.request("message:read", { messageIds: [m1.id, m2.id] });
    expect(read).to.deep.equal({ ok: true, updated: 2 });
    for (const d of [phone, laptop]) {
      await waitFor(() => d.statuses.some((s) => s.status === "read"), "read status");
      const update = d.statuses.find((s) => s.status === "read")!;
      expect(update.by).to.equal(b);
      expect(update.messageIds.sort()).to.deep.equal([m1.id, m2.id].sort());
    }
    expect(await statusOf(m1.id, b)).to.equal("read");
    // Reading again, or confirming delivery after read, changes nothing.
    expect(await bob.request("message:read", { messageIds: [m1.id] })).to.deep.equal({ ok: true, updated: 0 });
    await suite.server.messaging.confirmDelivered(b, [m1.id]);
    expect(await statusOf(m1.id, b)).to.equal("read");
  });

  it("marks a message read that was never delivered (read implies delivered)", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(a).connectSynced();
    const m = await alice.send(b, "read me");
    const bob = await device(b).connect();
    const reply = await bob.request("message:read", { messageIds: [m.id] });
    expectOk(reply);
    const { rows } = await suite.pg.query(
      "SELECT status, delivered_at, read_at FROM message_delivery WHERE message_id = $1",
      [m.id],
    );
    expect(rows[0].status).to.equal("read");
    expect(rows[0].delivered_at).to.be.an.instanceOf(Date);
    expect(rows[0].read_at).to.be.an.instanceOf(Date);
  });
});
