import { expect } from "chai";
import { lastAckToLastDelivery, printFigures, settle } from "../helpers/accounting";
import { planFlood, startFlood, startFloodClients } from "../helpers/flood";
import { sleep, waitFor } from "../helpers/wait";
import { FLOOD_TIMEOUTS, useTwoNodeCluster } from "../helpers/twoNodeCluster";

const SENDERS = 50;
const RECIPIENTS = 50;
const PER_SENDER = 200; // 10 000 messages
const KILL_AT = 0.3;

/**
 * Two nodes on a Redis Cluster of 3 masters and 3 replicas (cluster-node-timeout 1 s). A
 * third of the way into a 10 000-message flood one master gets SIGKILL: its replica is
 * promoted, the nodes' cluster clients follow the new slot map, and delivery resumes. What
 * crossed nodes while the slots were unserved arrives by redelivery.
 */
describe("fault: kill -9 a Redis Cluster master during a flood", function () {
  this.timeout(300_000);
  const cluster = useTwoNodeCluster(FLOOD_TIMEOUTS, { redis: "cluster" });

  it("promotes its replica, resumes delivery and loses nothing acknowledged", async () => {
    const { nodes, pg, urls, redisCluster } = cluster;
    const { senders, recipients } = await startFloodClients(urls, { senders: SENDERS, recipients: RECIPIENTS }, cluster.clients);
    const intents = planFlood(
      senders,
      recipients.map((r) => r.userId),
      PER_SENDER,
      "rcfail",
    );
    const mastersBefore = await redisCluster.masters();
    const { stats, done } = startFlood(senders, intents);
    await waitFor(() => stats.acked >= intents.length * KILL_AT, () => `the flood under way (${stats.acked} acknowledged)`, 120_000);

    const victim = mastersBefore[0]!;
    const ackedAtKill = stats.acked;
    const killedAt = Date.now();
    await redisCluster.kill(victim.port);
    // cluster_state stays ok until the others mark the master failed (cluster-node-timeout):
    // wait for the promotion itself, then for every live node to agree.
    await waitFor(
      async () => {
        const masters = await redisCluster.masters();
        return masters.length === 3 && !masters.some((m) => m.port === victim.port);
      },
      "the replica promoted",
      30_000,
      100,
    );
    await redisCluster.healthy(30_000);
    const promotedMs = Date.now() - killedAt;
    const mastersAfter = await redisCluster.masters();

    const finished = await Promise.race([done.then(() => true), sleep(180_000).then(() => false)]);
    const floodMs = (stats.finishedAt ?? Date.now()) - stats.startedAt;
    const { figures, settledMs, settled } = await settle(pg, stats, recipients, 60_000);
    const recovery = await lastAckToLastDelivery(pg, stats, recipients);
    // After the failover, does a packet still cross nodes live? The /readyz of both nodes says Redis answers.
    const ready = await Promise.all(nodes.map(async (n) => (await fetch(`${n.url}/readyz`)).status));

    printFigures("Redis Cluster master kill -9", figures, {
      senders: SENDERS,
      recipients: RECIPIENTS,
      ackedAtKill,
      killedMaster: victim.port,
      slots: victim.slots,
      clusterOkAfterMs: promotedMs,
      mastersAfter: mastersAfter.map((m) => m.port).join(","),
      floodMs,
      settleMs: settledMs,
      lastAckToLastDeliveryMs: recovery.ms,
      senderFailovers: senders.reduce((n, s) => n + s.failovers, 0),
      recipientFailovers: recipients.reduce((n, r) => n + r.failovers, 0),
      readyzAfter: ready.join(","),
      liveRaw: recipients.reduce((n, r) => n + r.liveRaw, 0),
      backlogRaw: recipients.reduce((n, r) => n + r.backlogRaw, 0),
    });

    for (const n of nodes) expect(n.child.exitCode, `node ${n.pid} still running`).to.equal(null);
    expect(mastersAfter.map((m) => m.port), "the killed master is no master any more").to.not.include(victim.port);
    expect(mastersAfter, "three masters again (the replica promoted)").to.have.length(3);
    expect(finished, "every sender finished").to.equal(true);
    expect(figures.ackedLost, "acknowledged but not stored").to.equal(0);
    expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
    expect(figures.okIdMismatch).to.equal(0);
    expect(figures.otherErrors, "sends refused for good").to.equal(0);
    expect(figures.acknowledged).to.equal(intents.length);
    expect(figures.storedRows).to.equal(intents.length);
    expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
    expect(figures.misaddressed).to.equal(0);
    expect(figures.undelivered, "addressed but never received").to.equal(0);
    expect(figures.sentLeft, `message_delivery rows still 'sent' after ${settled ? "settling" : "the 60 s settle timeout"}`).to.equal(0);
    expect(ready, "/readyz after the failover").to.deep.equal(nodes.map(() => 200));
  });
});
