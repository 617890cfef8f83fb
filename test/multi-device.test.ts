import { expect } from "chai";
import type { Client } from "pg";
import type { Message } from "../src/protocol";
import { Device, quiet, uniqueId, waitFor, type DeviceOptions } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";
import { useTwoNodeCluster } from "./helpers/twoNodeCluster";

/** Short enough that a device that does not acknowledge its backlog page is asked again soon. */
const SETTINGS = { DELIVERY_ACK_TIMEOUT_MS: "3000" };

type Fixture = {
  pg: () => Client;
  /** A new device on node `node` (0 or 1; one node: both are the same server). */
  device: (node: 0 | 1, userId: string, options?: Omit<DeviceOptions, "userId">) => Device;
};

const messageNews = (d: Device) => d.events.filter((e) => e.event === "message:new").map((e) => e.args[0] as Message);

const deliveryRows = async (pg: Client, messageId: string) =>
  (
    await pg.query("SELECT recipient_id, status FROM message_delivery WHERE message_id = $1 ORDER BY recipient_id", [
      messageId,
    ])
  ).rows;

function multiDeviceCases(f: Fixture): void {
  it("offers a sent message to the sender's other devices, never back to the sending socket, and once", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const phone = await f.device(0, a, { deviceId: "phone" }).connectSynced();
    const laptop = await f.device(1, a, { deviceId: "laptop" }).connectSynced();
    const bob = await f.device(1, b).connectSynced();

    const clientMsgId = uniqueId("c");
    const message = await phone.send({ to: b }, "from my phone", clientMsgId);
    await waitFor(() => laptop.live.length === 1, "the own copy on the laptop");
    expect(laptop.live[0]).to.deep.equal(message);
    expect(laptop.live[0]!.from).to.equal(a);
    await waitFor(() => bob.live.length === 1, "bob's copy");
    await waitFor(() => phone.statuses.length === 1, "bob's delivery receipt on the phone");

    // A retry is answered from the store and offered to nobody again.
    const retry = await phone.request("message:send", { clientMsgId, to: b, content: "from my phone" });
    expect(retry).to.deep.include({ ok: true, duplicate: true });
    await quiet();
    expect(messageNews(phone)).to.deep.equal([]);
    expect(messageNews(laptop).map((m) => m.id)).to.deep.equal([message.id]);
    expect(messageNews(bob).map((m) => m.id)).to.deep.equal([message.id]);
  });

  it("does not count the own devices' receipt as delivery: statuses stay with the recipient", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const phone = await f.device(0, a).connectSynced();
    const laptop = await f.device(1, a).connectSynced();
    // Bob is offline: only Alice's laptop can confirm the message, and it does.
    const message = await phone.send({ to: b }, "bob is away");
    await waitFor(() => laptop.live.length === 1, "the own copy");
    await quiet();
    expect(await deliveryRows(f.pg(), message.id)).to.deep.equal([{ recipient_id: b, status: "sent" }]);
    expect(phone.statuses).to.deep.equal([]);
    expect(laptop.statuses).to.deep.equal([]);

    // Bob's own receipt moves it, and both of Alice's devices hear it.
    const bob = await f.device(0, b).connectSynced();
    expect(bob.received.map((m) => m.id)).to.deep.equal([message.id]);
    for (const d of [phone, laptop]) await waitFor(() => d.statuses.length === 1, "delivered");
    expect(laptop.statuses[0]).to.deep.include({ status: "delivered", by: b, messageIds: [message.id] });
    expect(await deliveryRows(f.pg(), message.id)).to.deep.equal([{ recipient_id: b, status: "delivered" }]);
  });

  it("offers group messages to the sender's other devices; only the other members' receipts count", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const phone = await f.device(0, a).connectSynced();
    const laptop = await f.device(1, a).connectSynced();
    const bob = await f.device(0, b).connectSynced();
    const group = await phone.request("group:create", { title: "trip", members: [b, c] });
    if (!group.ok) expect.fail(group.error.message);
    const message = await phone.send({ conversationId: group.conversationId }, "who drives?");
    await waitFor(() => laptop.live.length === 1 && bob.live.length === 1, "laptop and bob");
    expect(laptop.live[0]).to.deep.equal(message);
    for (const d of [phone, laptop]) await waitFor(() => d.statuses.length === 1, "bob's receipt");
    await quiet();
    expect(phone.statuses.map((s) => s.by)).to.deep.equal([b]);
    expect(await deliveryRows(f.pg(), message.id)).to.deep.equal(
      [
        { recipient_id: b, status: "delivered" },
        { recipient_id: c, status: "sent" },
      ].sort((x, y) => (x.recipient_id < y.recipient_id ? -1 : 1)),
    );
  });

  it("announces a read to the reader's other devices, not to the reading socket, and only what changed", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await f.device(0, a).connectSynced();
    const bobPhone = await f.device(1, b, { deviceId: "phone" }).connectSynced();
    const bobTablet = await f.device(0, b, { deviceId: "tablet" }).connectSynced();
    const m1 = await alice.send({ to: b }, "one");
    const m2 = await alice.send({ to: b }, "two");
    await waitFor(() => alice.statuses.flatMap((s) => s.messageIds).length === 2, "both delivered");

    expect(await bobPhone.request("message:read", { messageIds: [m1.id, m2.id] })).to.deep.equal({ ok: true, updated: 2 });
    await waitFor(() => bobTablet.statuses.length === 1, "the read on the tablet");
    const onTablet = bobTablet.statuses[0]!;
    expect(onTablet).to.deep.include({ status: "read", by: b });
    expect([...onTablet.messageIds].sort()).to.deep.equal([m1.id, m2.id].sort());
    await waitFor(() => alice.statuses.some((s) => s.status === "read"), "the read receipt to alice");
    expect(alice.statuses.find((s) => s.status === "read")).to.deep.include({ by: b, at: onTablet.at });

    // Nothing changes: nobody is told.
    expect(await bobTablet.request("message:read", { messageIds: [m1.id] })).to.deep.equal({ ok: true, updated: 0 });
    await quiet();
    expect(bobPhone.statuses).to.deep.equal([]);
    expect(bobTablet.statuses).to.have.length(1);
    expect(alice.statuses.filter((s) => s.status === "read")).to.have.length(1);
  });

  it("skips a device still syncing its backlog; it finds the message in conversation:list and history after", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const bob = await f.device(0, b).connectSynced();
    const earlier = await bob.send({ to: a }, "while you were away");
    // The laptop holds its backlog page unacknowledged: it stays in the syncing state.
    const laptop = f.device(1, a, { autoAck: false });
    await laptop.connect();
    await waitFor(() => laptop.backlogPages.length === 1, "the laptop's backlog page");
    const phone = await f.device(0, a).connectSynced();
    const message = await phone.send({ to: b }, "sent during the laptop's sync");
    await waitFor(() => bob.live.length === 1, "bob's copy");
    laptop.autoAck = true; // the page comes again after DELIVERY_ACK_TIMEOUT_MS; now confirmed
    await waitFor(() => laptop.syncs.length === 1, "the laptop's sync:complete", 15_000);
    await quiet();
    expect(messageNews(laptop).map((m) => m.id)).to.not.include(message.id);

    const list = await laptop.request("conversation:list", {});
    if (!list.ok) expect.fail(list.error.message);
    const conversation = list.conversations.find((c) => c.id === message.conversationId)!;
    expect(conversation.lastSeq).to.equal(message.seq);
    const history = await laptop.request("message:history", { conversationId: message.conversationId, afterSeq: earlier.seq });
    if (!history.ok) expect.fail(history.error.message);
    expect(history.messages).to.deep.equal([message]);
  });
}

describe("multi-device: one node", function () {
  this.timeout(30_000);
  const suite = useServerSuite(SETTINGS);
  multiDeviceCases({ pg: () => suite.pg, device: (_node, userId, options) => suite.device(userId, options) });
});

describe("multi-device: two nodes through Redis", function () {
  this.timeout(60_000);
  const cluster = useTwoNodeCluster(SETTINGS);
  const devices: Device[] = [];
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  multiDeviceCases({
    pg: () => cluster.pg,
    device: (node, userId, options = {}) => {
      const d = new Device(cluster.urls[node]!, { userId, ...options });
      devices.push(d);
      return d;
    },
  });
});
