import { expect } from "chai";
import { MemoryOutboxStorage } from "../src/client/OutboxStorage";
import type { TicksClient } from "../src/client/TicksClient";
import { uniqueId, waitFor } from "./helpers/device";
import { SdkClients } from "./helpers/sdk";
import { useServerSuite } from "./helpers/serverSuite";
import { urlOf } from "./helpers/server";

describe("SDK: ticks that converge (status stream, group ticks, bounded memory)", function () {
  this.timeout(60_000);
  const suite = useServerSuite();
  const clients = new SdkClients();
  afterEach(() => clients.closeAll());
  const url = () => urlOf(suite.server);

  it("a device away while its messages were read shows them read after it comes back, and after a restart from its storage", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const storage = new MemoryOutboxStorage();
    const phone = await clients.connected(url(), { userId: a, deviceId: "phone", storage });
    const bob = await clients.connected(url(), { userId: b });
    const local = await phone.send({ to: b }, "read me later");
    await waitFor(() => phone.pending().length === 0, "stored");
    const id = [...phone.messages(phone.directWith(b)!.id)].find((m) => m.clientMsgId === local.clientMsgId)!.id;
    await waitFor(() => phone.statusOf(id) === "delivered", "delivered on the phone");
    phone.close();

    // While the phone is away, bob reads it: the live `message:status` reaches nobody of alice.
    await waitFor(() => bob.conversations().some((c) => c.unread === 1), "bob's unread");
    await bob.markRead(bob.directWith(a)!.id);
    // The app restarts on the phone: same storage, new client. Before any socket, the kept ticks.
    const again = clients.create(url(), { userId: a, deviceId: "phone", storage });
    const synced = again.whenSynced();
    await again.connect();
    await synced;
    expect(again.statusOf(id)).to.equal("read");
    const kept = await storage.loadStatus();
    expect(kept?.cursor).to.be.a("string");
    expect(new Map(kept!.statuses).get(id)?.status).to.equal("read");
  });

  it("group ticks follow the all-recipients rule, and message info lists each member", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const alice = await clients.connected(url(), { userId: a });
    const bob = await clients.connected(url(), { userId: b });
    const group = await alice.createGroup("trio", [b, c]);
    await waitFor(() => alice.conversations().some((x) => x.id === group), "the group in alice's list");
    const changes: string[] = [];
    alice.on("status", (s) => s.messageId && changes.push(s.status));
    const local = await alice.send({ conversationId: group }, "hello both");
    await waitFor(() => alice.messages(group).some((m) => m.clientMsgId === local.clientMsgId), "stored");
    const id = alice.messages(group).find((m) => m.clientMsgId === local.clientMsgId)!.id;
    // Bob has it, carol has not connected: still one tick.
    await waitFor(async () => (await alice.info(id)).some((r) => r.userId === b && r.status === "delivered"), "bob's receipt");
    await waitFor(() => changes.length >= 1, "the sent change");
    expect(alice.statusOf(id)).to.equal("sent");
    await bob.markRead(group);
    await waitFor(async () => (await alice.info(id)).some((r) => r.userId === b && r.status === "read"), "bob's read");
    expect(alice.statusOf(id)).to.equal("sent");
    // Carol connects: delivered to every recipient.
    const carol = await clients.connected(url(), { userId: c });
    await waitFor(() => alice.statusOf(id) === "delivered", "delivered once carol has it");
    await carol.markRead(group);
    await waitFor(() => alice.statusOf(id) === "read", "read once both read");
    expect(changes).to.deep.equal(["sent", "delivered", "read"]);
    const info = await alice.info(id);
    expect(info.map((r) => [r.userId, r.status])).to.deep.equal([b, c].sort().map((u) => [u, "read"]));
  });

  it("holds at most maxConversations conversations' messages and loads a dropped one again on use", async () => {
    const me = uniqueId("dana");
    const peers = Array.from({ length: 5 }, () => uniqueId("p"));
    const dana = await clients.connected(url(), { userId: me, sync: { maxConversations: 2 } });
    const senders: TicksClient[] = [];
    for (const p of peers) senders.push(await clients.connected(url(), { userId: p }));
    for (const [i, s] of senders.entries()) {
      await s.send({ to: me }, `from ${i}`);
      await waitFor(() => dana.conversations().length === i + 1, `conversation ${i}`);
    }
    await waitFor(() => dana.memory().conversations <= 2, "bounded");
    expect(dana.memory().conversations).to.be.at.most(2);
    const first = dana.directWith(peers[0]!)!;
    expect(dana.messages(first.id)).to.deep.equal([]);
    const { messages } = await dana.loadOlder(first.id);
    expect(messages.map((m) => m.content)).to.deep.equal(["from 0"]);
    expect(dana.messages(first.id).map((m) => m.content)).to.deep.equal(["from 0"]);
    // Its unread message is still read by markRead, though the list came before it was loaded.
    expect(await dana.markRead(first.id)).to.equal(1);
  });
});
