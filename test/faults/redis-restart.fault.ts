import { expect } from "chai";
import {
  planFlood,
  printFigures,
  settle,
  sleep,
  startFlood,
  startFloodClients,
  waitUntil,
  type FailoverRecipient,
  type FailoverSender,
} from "../helpers/flood";
import { FLOOD_TIMEOUTS, useTwoNodeCluster } from "../helpers/twoNodeCluster";

const SENDERS = 50;
const RECIPIENTS = 50;
const PER_SENDER = 200; // 10 000 messages, as in case 1
const OUTAGE_AT = 0.3;
const OUTAGE_MS = 3000;

/**
 * Case 3. Two nodes, one database, a private Redis that is killed and started again on the
 * same port a third of the way into a flood. Clients stay on their nodes (Redis is not in
 * their path); what crosses nodes while Redis is away must arrive by backlog or redelivery.
 */
describe("fault: Redis restarted during a flood across two nodes", function () {
  this.timeout(300_000);
  const cluster = useTwoNodeCluster(FLOOD_TIMEOUTS);

  it("loses nothing, stores each message once and delivers each once after de-dup", async () => {
    const { nodes, redis, pg, urls } = cluster;
    const { senders, recipients } = await startFloodClients(urls, { senders: SENDERS, recipients: RECIPIENTS }, cluster.clients);

    const intents = planFlood(
      senders,
      recipients.map((r) => r.userId),
      PER_SENDER,
      "redis",
    );
    const { stats, done } = startFlood(senders, intents);
    expect(await waitUntil(() => stats.acked >= intents.length * OUTAGE_AT, 120_000), "flood under way").to.equal(true);

    const ackedAtStop = stats.acked;
    await redis.stop();
    const stoppedAt = Date.now();
    await sleep(500);
    const readyDuring = await Promise.all(nodes.map(async (n) => (await fetch(`${n.url}/readyz`)).status));
    await sleep(OUTAGE_MS - 500);
    const ackedDuringOutage = stats.acked - ackedAtStop;
    await redis.start();
    const outageMs = Date.now() - stoppedAt;
    const readyAfter = await Promise.all(
      nodes.map(async (n) => {
        let status = 0;
        const deadline = Date.now() + 15_000;
        while (Date.now() < deadline && (status = (await fetch(`${n.url}/readyz`)).status) !== 200) await sleep(200);
        return status;
      }),
    );

    const finished = await Promise.race([done.then(() => true), sleep(180_000).then(() => false)]);
    const floodMs = (stats.finishedAt ?? Date.now()) - stats.startedAt;
    const { figures, settledMs, settled } = await settle(pg, stats, recipients, 60_000);

    // After the restart, does a message still cross nodes live (well before a redelivery)?
    const crossLatencies = await crossNodeProbe(senders, recipients, urls, 10);

    printFigures("3 Redis restart", figures, {
      senders: SENDERS,
      recipients: RECIPIENTS,
      ackedAtStop,
      okDuringRedisOutage: ackedDuringOutage,
      outageMs,
      readyzDuring: readyDuring.join(","),
      readyzAfter: readyAfter.join(","),
      floodMs,
      settleMs: settledMs,
      crossNodeLiveMs: crossLatencies.map((ms) => (ms < 0 ? "none" : ms)).join(","),
      senderFailovers: senders.reduce((n, s) => n + s.failovers, 0),
      recipientFailovers: recipients.reduce((n, r) => n + r.failovers, 0),
      retriesExhausted: senders.reduce((n, s) => n + s.exhausted, 0),
      backlogRaw: recipients.reduce((n, r) => n + r.backlogRaw, 0),
      liveRaw: recipients.reduce((n, r) => n + r.liveRaw, 0),
    });

    for (const n of nodes) expect(n.child.exitCode, `node ${n.pid} still running`).to.equal(null);
    expect(finished, "every sender finished").to.equal(true);
    expect(figures.ackedLost, "acknowledged but not stored").to.equal(0);
    expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
    expect(figures.okIdMismatch).to.equal(0);
    expect(figures.otherErrors, "sends refused for good").to.equal(0);
    expect(figures.acknowledged).to.equal(intents.length);
    expect(figures.notStored).to.equal(0);
    expect(figures.storedRows).to.equal(intents.length);
    expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
    expect(figures.misaddressed).to.equal(0);
    expect(figures.undelivered, "addressed but never received").to.equal(0);
    expect(settled && figures.sentLeft, "message_delivery rows still 'sent' after settling").to.equal(0);
    expect(ackedDuringOutage, "sends keep being stored while Redis is down").to.be.greaterThan(0);
    expect(readyDuring, "/readyz while Redis is down").to.deep.equal(nodes.map(() => 503));
    expect(readyAfter, "/readyz once Redis is back").to.deep.equal(nodes.map(() => 200));
    expect(
      crossLatencies.every((ms) => ms >= 0 && ms < 1500),
      `live delivery across nodes after the restart, ms per probe (redelivery would take >= 2000): ${crossLatencies.join(",")}`,
    ).to.equal(true);
  });
});

/**
 * Sends `count` messages, each from a sender on one node to a recipient on the other, one at
 * a time, and measures how long each takes to arrive (-1: not within 5 s).
 */
async function crossNodeProbe(
  senders: FailoverSender[],
  recipients: FailoverRecipient[],
  urls: string[],
  count: number,
): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const sender = senders[i % senders.length]!;
    const recipient = recipients.find((r, j) => j >= i && r.url !== sender.url && r.connected);
    if (!recipient) {
      latencies.push(-1);
      continue;
    }
    const started = Date.now();
    const reply = await sender.send({ clientMsgId: `probe-${i}`, to: recipient.userId, content: `probe ${i}` });
    if (!reply?.ok) {
      latencies.push(-1);
      continue;
    }
    const id = reply.message.id;
    const arrived = await waitUntil(() => recipient.received.has(id), 5000, 5);
    latencies.push(arrived ? Date.now() - started : -1);
  }
  return latencies;
}
