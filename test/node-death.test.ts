import { expect } from "chai";
import { presenceNodesKey } from "../src/cluster/RedisPresenceTracker";
import { uniqueId } from "./helpers/ids";
import { REDIS_URL, useRedisPrefix } from "./helpers/redisPrefix";
import { useServerSuite } from "./helpers/serverSuite";
import { quiet, waitFor } from "./helpers/wait";

/**
 * Recovery after another node's death, on one real server with Redis: a node entry whose
 * deadline has passed is put in the nodes set, as a node killed with SIGKILL leaves it; the
 * server's own reaper claims it, announces it, and re-offers what is still unconfirmed.
 * Redelivery is at 30 s, so only the recovery round can explain an offer within the test.
 */
describe("recovery after a node's death", function () {
  this.timeout(30_000);
  const shared = useRedisPrefix("node-death");
  const prefix = shared.prefix;
  const suite = useServerSuite({
    REDIS_URL,
    REDIS_PREFIX: prefix,
    PRESENCE_TTL_MS: "600",
    REDELIVERY_AFTER_MS: "30000",
    DELIVERY_ACK_TIMEOUT_MS: "300",
  });
  const counter = async (outcome: string) =>
    (await suite.server.metrics.redelivery.get()).values.find((v) => v.labels.reason === "node_death" && v.labels.outcome === outcome)
      ?.value ?? 0;
  /** What SIGKILL leaves behind: the node's entry, its deadline passed. */
  const killGhost = (aliveUntil: number) => shared.redis.zadd(presenceNodesKey(prefix), aliveUntil, uniqueId("ghost"));

  it("re-offers at once, to the devices connected here, what is still unconfirmed from before the death", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b, { autoAck: false }).connectSynced();
    const reply = await alice.request("message:send", { clientMsgId: "lost-receipt", to: b, content: "did you get it?" });
    if (!reply.ok) throw new Error(reply.error.message);
    await waitFor(() => bob.live.length === 1, "the live offer");
    await quiet(500); // past DELIVERY_ACK_TIMEOUT_MS: the offer is over, the row still 'sent'
    const offeredBefore = await counter("offered");

    bob.autoAck = true;
    const died = Date.now();
    await killGhost(died);
    await waitFor(() => alice.statuses.some((s) => s.status === "delivered"), "delivered after the death", 5000);
    expect(bob.live.map((m) => m.id)).to.deep.equal([reply.message.id, reply.message.id]);
    expect(Date.now() - died, "ms to recover (redelivery would take 30 000)").to.be.below(5000);
    expect(await counter("offered")).to.equal(offeredBefore + 1);
    const { rows } = await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1", [reply.message.id]);
    expect(rows[0].status).to.equal("delivered");
  });

  it("skips a message whose offer from this node is still waiting, and one created after the death", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b, { autoAck: false }).connectSynced();
    const skippedBefore = await counter("skipped");
    const offeredBefore = await counter("offered");
    const beforeBoth = Date.now() - 1;
    const early = await alice.request("message:send", { clientMsgId: "waiting", to: b, content: "offer pending" });
    if (!early.ok) throw new Error(early.error.message);
    await waitFor(() => bob.live.length === 1, "the live offer");
    await killGhost(Date.now()); // while the offer still waits for its receipt
    await waitFor(async () => (await counter("skipped")) > skippedBefore, "the waiting offer skipped by the recovery round", 5000);

    // A message younger than the dead node's deadline is not its doing: not offered again.
    await quiet(400); // the first offer has timed out: both rows are 'sent' now
    const late = await alice.request("message:send", { clientMsgId: "later", to: b, content: "after" });
    if (!late.ok) throw new Error(late.error.message);
    await waitFor(() => bob.live.length === 2, "the second live offer");
    await quiet(400);
    await killGhost(beforeBoth); // died before both messages were created
    await quiet(600); // a heartbeat round (100 ms) and the recovery round
    expect(await counter("offered"), "nothing re-offered").to.equal(offeredBefore);
    expect(bob.live.map((m) => m.clientMsgId)).to.deep.equal(["waiting", "later"]);
  });
});
