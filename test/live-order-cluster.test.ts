import { expect } from "chai";
import type { Message } from "../src/protocol";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { expectOk } from "./helpers/replies";
import { useTwoNodeCluster } from "./helpers/twoNodeCluster";

/** Messages each sender floods into its conversation. */
const PER_SENDER = 300;
/** Sends each sender keeps in flight (a burst, as a busy chat is). */
const IN_FLIGHT = 16;

/** First arrivals in a conversation with a lower seq than one that came before, per device. */
function inversions(live: Message[]): number {
  const seen = new Set<string>();
  const max = new Map<string, number>();
  let n = 0;
  for (const m of live) {
    if (seen.has(m.id)) continue;
    seen.add(m.id);
    if (m.seq < (max.get(m.conversationId) ?? 0)) n++;
    else max.set(m.conversationId, m.seq);
  }
  return n;
}

async function flood(from: Device, target: { to: string } | { conversationId: string }, tag: string): Promise<Message[]> {
  const stored: Message[] = [];
  let next = 0;
  const lane = async () => {
    while (next < PER_SENDER) {
      const i = next++;
      stored.push(await from.send(target, `${tag} ${i}`));
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return stored;
}

/**
 * Live order across nodes, with nodes and Redis up: two server processes (the compiled code,
 * `npm run build` first) on one database and a private Redis; in one group and one direct
 * conversation, senders on both nodes write at once, so consecutive seqs are stored by
 * different nodes; every recipient device (on both nodes, own other devices included) gets
 * its live `message:new` in seq order per conversation, and every message.
 */
describe("live order across two nodes (no fault)", function () {
  this.timeout(180_000);
  const cluster = useTwoNodeCluster({});
  const device = (node: number, userId: string) => {
    const d = new Device(cluster.urls[node]!, { userId });
    cluster.clients.push(d);
    return d;
  };

  it("delivers every live message:new in seq order per conversation, on every device, from senders on both nodes", async () => {
    const [s0, s1, r0, r1, a, b] = ["s0", "s1", "r0", "r1", "a", "b"].map(uniqueId) as [string, string, string, string, string, string];
    // The group: a sender and a recipient on each node.
    const groupSender0 = await device(0, s0).connectSynced();
    const groupSender1 = await device(1, s1).connectSynced();
    const groupRecipient0 = await device(0, r0).connectSynced();
    const groupRecipient1 = await device(1, r1).connectSynced();
    // The direct conversation: each user sends from one node and has a second device on the
    // other, which gets both the other user's messages and its own user's copies.
    const aSends = await device(0, a).connectSynced();
    const aReads = await device(1, a).connectSynced();
    const bSends = await device(1, b).connectSynced();
    const bReads = await device(0, b).connectSynced();

    const created = await groupSender0.request("group:create", { title: "flood", members: [s1, r0, r1] });
    expectOk(created);
    const group = { conversationId: created.conversationId };
    const opened = await aSends.send({ to: b }, "hello");
    const direct = { conversationId: opened.conversationId };

    const [g0, g1, d0, d1] = await Promise.all([
      flood(groupSender0, group, "g0"),
      flood(groupSender1, group, "g1"),
      flood(aSends, direct, "a"),
      flood(bSends, direct, "b"),
    ]);
    const groupIds = [...g0, ...g1].map((m) => m.id);
    const directIds = [opened, ...d0, ...d1].map((m) => m.id);
    const expected = new Map<Device, string[]>([
      [groupRecipient0, groupIds],
      [groupRecipient1, groupIds],
      [groupSender0, g1.map((m) => m.id)],
      [groupSender1, g0.map((m) => m.id)],
      [aReads, directIds],
      [bReads, directIds],
      [aSends, d1.map((m) => m.id)],
      [bSends, [opened, ...d0].map((m) => m.id)],
    ]);
    for (const [d, ids] of expected) {
      await waitFor(
        () => ids.every((id) => d.live.some((m) => m.id === id)),
        () => `${d.userId}: ${d.live.length} live of ${ids.length}`,
        60_000,
        50,
      );
    }

    const counts = [...expected.keys()].map((d) => ({ device: d.userId.split("-")[0], live: d.live.length, inversions: inversions(d.live) }));
    console.log(`      ${counts.map((c) => `${c.device}: ${c.live} live, ${c.inversions} inversions`).join("; ")}`);
    expect(counts.reduce((n, c) => n + c.inversions, 0)).to.equal(0);
    // How often a socket's hold ran out before the missing seq came: printed, not asserted
    // (a stall of the shared machine longer than the hold could make one, with no fault).
    const gaps = await Promise.all(
      cluster.nodes.map(async (n) => {
        const text = await (await fetch(`${n.url}/metrics`)).text();
        return text
          .split("\n")
          .filter((l) => l.startsWith("ticks_live_order_gaps_given_up_total{"))
          .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
      }),
    );
    console.log(`      gaps given up (ticks_live_order_gaps_given_up_total) per node: ${gaps.join(", ")}`);
    // Nothing a device should not have (its own sends, the other conversation's).
    for (const [d, ids] of expected) {
      const own = new Set(ids);
      expect(d.live.filter((m) => !own.has(m.id)).map((m) => m.content)).to.deep.equal([]);
    }
  });
});
