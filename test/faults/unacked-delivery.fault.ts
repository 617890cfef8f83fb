import { expect } from "chai";
import { Client } from "pg";
import type { Message } from "../../src/protocol";
import { Device } from "../helpers/device";
import { uniqueId } from "../helpers/ids";
import { quiet, waitFor } from "../helpers/wait";
import type { NodeProcess } from "../helpers/processes";
import { useTwoNodeCluster } from "../helpers/twoNodeCluster";

const REDELIVERY_AFTER_MS = 1000;
const DELIVERY_ACK_TIMEOUT_MS = 1000;

/**
 * Case 4. A device that got a message but never acknowledged it: the message must stay
 * 'sent' and come again, by backlog on the next connection and, while a non-acking device
 * stays connected, by periodic redelivery. Two nodes and a private Redis, so receipts and
 * offers cross nodes as in production.
 */
describe("fault: a recipient that never acknowledges", function () {
  this.timeout(120_000);
  const cluster = useTwoNodeCluster({
    REDELIVERY_AFTER_MS: String(REDELIVERY_AFTER_MS),
    DELIVERY_ACK_TIMEOUT_MS: String(DELIVERY_ACK_TIMEOUT_MS),
  });
  // Every test starts with no device of an earlier one still connected.
  afterEach(() => cluster.clients.splice(0).forEach((d) => d.close()));

  const device = (node: NodeProcess, userId: string, autoAck = true) => {
    const d = new Device(node.url, { userId, autoAck });
    cluster.clients.push(d);
    return d;
  };
  const statusOf = async (recipient: string) =>
    (
      await cluster.pg.query<{ message_id: string; status: string }>(
        "SELECT message_id, status FROM message_delivery WHERE recipient_id = $1 ORDER BY delivery_id",
        [recipient],
      )
    ).rows;
  /** The recipient's rows once all are 'delivered', or as they are after 10 s (printed, then asserted). */
  const settledStatuses = async (recipient: string) => {
    let rows = await statusOf(recipient);
    await waitFor(
      async () => (rows = await statusOf(recipient)).every((r) => r.status === "delivered"),
      () => `every row 'delivered' (statuses: ${rows.map((r) => r.status).join(",")})`,
      10_000,
      100,
    ).catch(() => {});
    return rows;
  };
  /** Every message:new and backlog message a device got, with its arrival time. */
  const record = (d: Device) => {
    const got: { id: string; at: number; via: "live" | "backlog" }[] = [];
    d.socket.on("message:new", (m) => got.push({ id: m.id, at: Date.now(), via: "live" }));
    d.socket.on("message:backlog", (p) => p.messages.forEach((m) => got.push({ id: m.id, at: Date.now(), via: "backlog" })));
    return got;
  };

  it("keeps a live message 'sent' when the device drops before acknowledging, and redelivers it on reconnect", async () => {
    const [A, B] = cluster.nodes as [NodeProcess, NodeProcess];
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(A, a).connectSynced();
    const raw = device(B, b, false); // a raw socket that never acks
    const rawGot = record(raw);
    await raw.connectSynced();

    const sent: Message[] = [];
    for (let i = 0; i < 10; i++) sent.push(await alice.send(b, `unacked ${i}`));
    await waitFor(() => new Set(raw.live.map((m) => m.id)).size === sent.length, "all ten live, unacknowledged");
    raw.close(); // drops before acknowledging anything

    // Past the server's receipt timeout and two redelivery periods: nothing may have moved.
    await quiet(DELIVERY_ACK_TIMEOUT_MS + 2 * REDELIVERY_AFTER_MS);
    const whileAway = await statusOf(b);
    expect(whileAway.map((r) => r.message_id)).to.deep.equal(sent.map((m) => m.id));
    expect(whileAway.map((r) => r.status), "still 'sent' while the device is away").to.deep.equal(sent.map(() => "sent"));
    expect(alice.statuses, "no delivered receipt reached the sender").to.have.length(0);

    const back = device(A, b); // reconnects, on the other node
    const backGot = record(back);
    await back.connectSynced();
    const backlogIds = back.backlogPages.flatMap((p) => p.messages.map((m) => m.id));
    expect(backlogIds, "redelivered in the backlog, in seq order").to.deep.equal(sent.map((m) => m.id));
    const after = await settledStatuses(b);
    await waitFor(() => alice.statuses.flatMap((s) => s.messageIds).length >= sent.length, "delivered receipts", 10_000);

    const rawReceived = rawGot.length + backGot.length;
    const unique = new Set([...rawGot, ...backGot].map((g) => g.id)).size;
    const dupRows = await duplicateRows(cluster.pg);
    const stored = (await cluster.pg.query("SELECT count(*)::int AS n FROM messages WHERE to_user_id = $1", [b])).rows[0].n;
    console.log(
      `      FIGURES [4a drop before ack] sent=${sent.length} acknowledged=${sent.length} storedRows=${stored} ` +
        `delivered=${unique}/${sent.length} rawReceived=${rawReceived} rawDuplicates=${rawReceived - unique} ` +
        `duplicateRows=${dupRows} lost=${sent.length - unique} (sentWhileAway=${whileAway.filter((r) => r.status === "sent").length} ` +
        `backlogOnReconnect=${backlogIds.length} liveBeforeDrop=${rawGot.length} ` +
        `deliveredAfter=${after.filter((r) => r.status === "delivered").length} sentLeft=${after.filter((r) => r.status === "sent").length})`,
    );
    expect(after.map((r) => r.status), "delivered once the backlog page was acknowledged").to.deep.equal(sent.map(() => "delivered"));
    expect(dupRows).to.equal(0);
    expect(unique).to.equal(sent.length);
  });

  it("keeps a backlog page 'sent' when the device drops before acknowledging it", async () => {
    const [A, B] = cluster.nodes as [NodeProcess, NodeProcess];
    const a = uniqueId("alice");
    const d = uniqueId("dave");
    const alice = await device(A, a).connectSynced();
    const sent: Message[] = [];
    for (let i = 0; i < 5; i++) sent.push(await alice.send(d, `offline ${i}`));

    const raw = device(B, d, false);
    await raw.connect();
    await waitFor(() => raw.backlogPages.length >= 1, "the backlog page");
    raw.close();
    await quiet(DELIVERY_ACK_TIMEOUT_MS + 500);
    const whileAway = await statusOf(d);
    expect(whileAway.map((r) => r.status), "the unacknowledged page is still 'sent'").to.deep.equal(sent.map(() => "sent"));

    const back = await device(B, d).connectSynced();
    const ids = back.backlogPages.flatMap((p) => p.messages.map((m) => m.id));
    expect(ids).to.deep.equal(sent.map((m) => m.id));
    const after = await settledStatuses(d);
    const rawReceived = raw.backlogPages.flatMap((p) => p.messages).length + ids.length;
    console.log(
      `      FIGURES [4b backlog page dropped] sent=${sent.length} acknowledged=${sent.length} storedRows=${whileAway.length} ` +
        `delivered=${new Set(ids).size}/${sent.length} rawReceived=${rawReceived} rawDuplicates=${rawReceived - new Set(ids).size} ` +
        `duplicateRows=${await duplicateRows(cluster.pg)} lost=${sent.length - new Set(ids).size} ` +
        `(sentWhileAway=${whileAway.filter((r) => r.status === "sent").length} sentLeft=${after.filter((r) => r.status === "sent").length})`,
    );
    expect(after.map((r) => r.status), "delivered once the backlog was acknowledged").to.deep.equal(sent.map(() => "delivered"));
  });

  it("offers an unacknowledged message again and again to a device that stays connected", async () => {
    const [A, B] = cluster.nodes as [NodeProcess, NodeProcess];
    const a = uniqueId("alice");
    const c = uniqueId("carol");
    const alice = await device(A, a).connectSynced();
    const carol = device(B, c, false);
    const got = record(carol);
    await carol.connectSynced();

    const sent = [await alice.send(c, "one"), await alice.send(c, "two"), await alice.send(c, "three")];
    const window = 5 * REDELIVERY_AFTER_MS;
    await quiet(window);
    const offers = (id: string) => got.filter((g) => g.id === id);
    const offersInWindow = sent.map((m) => offers(m.id).length);
    const stillSent = (await statusOf(c)).filter((r) => r.status === "sent").length;
    const gaps = offers(sent[0]!.id)
      .map((g) => g.at)
      .map((t, i, all) => (i === 0 ? 0 : t - all[i - 1]!))
      .slice(1);
    expect(alice.statuses, "no receipt while nobody acknowledges").to.have.length(0);

    carol.autoAck = true; // the device recovers: the next offer is confirmed
    const after = await settledStatuses(c);
    const offersWhenConfirmed = got.length;
    await quiet(3 * REDELIVERY_AFTER_MS);
    const offersAfterConfirm = got.length - offersWhenConfirmed;

    const unique = new Set(got.map((g) => g.id)).size;
    console.log(
      `      FIGURES [4c connected, never acks] sent=${sent.length} acknowledged=${sent.length} storedRows=${after.length} ` +
        `delivered=${unique}/${sent.length} rawReceived=${got.length} rawDuplicates=${got.length - unique} ` +
        `duplicateRows=${await duplicateRows(cluster.pg)} lost=${sent.length - unique} ` +
        `(offersIn${window}ms=${offersInWindow.join(",")} gapsMs=${gaps.join(",")} sentDuringWindow=${stillSent} ` +
        `sentLeft=${after.filter((r) => r.status === "sent").length} offersAfterConfirm=${offersAfterConfirm})`,
    );
    expect(stillSent, "still 'sent' while unacknowledged").to.equal(sent.length);
    for (const n of offersInWindow) expect(n, "offers of each message while connected").to.be.at.least(3);
    expect(gaps.filter((g) => g < REDELIVERY_AFTER_MS / 2), `offers closer than half the redelivery period, of gaps ${gaps.join(",")}`).to.deep.equal([]);
    expect(after.map((r) => r.status), "delivered once acknowledged").to.deep.equal(sent.map(() => "delivered"));
    expect(offersAfterConfirm, "no more offers once confirmed").to.equal(0);
  });
});

async function duplicateRows(pg: Client): Promise<number> {
  const { rows } = await pg.query(
    "SELECT COALESCE(sum(n - 1), 0)::int AS n FROM (SELECT count(*) AS n FROM messages GROUP BY from_user_id, client_msg_id) x",
  );
  return rows[0].n as number;
}
