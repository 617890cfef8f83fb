import { expect } from "chai";
import Redis from "ioredis";
import type { RunningTicks } from "../src/main";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { startPrivateRedis, type RedisProcess } from "./helpers/processes";
import { expectOk } from "./helpers/replies";
import { startServer, urlOf } from "./helpers/server";

/**
 * A large group's fan-out costs nothing per recipient between nodes or in statements:
 * counted, not timed. Two nodes on a private Redis (so its command counters are this
 * test's alone), members spread over both, every one connected and confirming. Per
 * message: the Redis commands both nodes sent, and the receipt statements they ran.
 */
describe("group fan-out cost (two nodes, private Redis)", function () {
  this.timeout(120_000);
  const MEMBERS = 300;
  const MESSAGES = 10;
  let db: TestDatabase;
  let redis: RedisProcess;
  let admin: Redis;
  let nodes: RunningTicks[];
  const devices: Device[] = [];

  /** Calls per Redis command so far (INFO commandstats). */
  const commandCalls = async (): Promise<Map<string, number>> => {
    const info = await admin.info("commandstats");
    const calls = new Map<string, number>();
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
    return calls;
  };
  /** Receipt statements (delivered) the two nodes ran so far. */
  const receiptStatements = async () => {
    let n = 0;
    for (const node of nodes) {
      const values = (await node.metrics.writeBatchSize.get()).values;
      n += values.find((v) => v.metricName === "ticks_write_batch_size_count" && v.labels.kind === "delivered")?.value ?? 0;
    }
    return n;
  };

  before(async () => {
    db = await createTestDatabase();
    redis = await startPrivateRedis();
    admin = new Redis(redis.url);
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniqueId("fanout") };
    nodes = [await startServer(db.url, env), await startServer(db.url, env)];
  });
  after(async () => {
    devices.splice(0).forEach((d) => d.close());
    await Promise.all(nodes.map((n) => n.stop()));
    admin.disconnect();
    await redis.stop();
    await db.drop();
  });

  it(`sends one ${MEMBERS}-member group message with a handful of Redis commands and receipt statements, not ${MEMBERS - 1} of either`, async () => {
    const users = Array.from({ length: MEMBERS }, (_, i) => uniqueId(`m${i}`));
    for (let i = 0; i < MEMBERS; i += 50) {
      const batch = users.slice(i, i + 50).map((u, k) => new Device(urlOf(nodes[(i + k) % 2]!), { userId: u }));
      devices.push(...batch);
      await Promise.all(batch.map((d) => d.connectSynced()));
    }
    const sender = devices[0]!;
    const created = await sender.request("group:create", { title: "everyone", members: users.slice(1) });
    expectOk(created);
    const group = created.conversationId;
    const others = devices.slice(1);
    /** One message through: every other member has it, and the sender every "delivered". */
    const through = async (m: Message) => {
      await waitFor(() => others.every((d) => d.live.some((x) => x.id === m.id)), `${m.content} to every member`, 30_000);
      await waitFor(
        () => sender.statuses.filter((s) => s.status === "delivered" && s.messageIds.includes(m.id)).length === MEMBERS - 1,
        `every delivered status of ${m.content}`,
        30_000,
      );
    };
    await through(await sender.send({ conversationId: group }, "warm-up"));

    const [commandsBefore, statementsBefore] = [await commandCalls(), await receiptStatements()];
    for (let i = 0; i < MESSAGES; i++) await through(await sender.send({ conversationId: group }, `m${i}`));
    const [commandsAfter, statementsAfter] = [await commandCalls(), await receiptStatements()];

    const perMessage = (name: string) => ((commandsAfter.get(name) ?? 0) - (commandsBefore.get(name) ?? 0)) / MESSAGES;
    const publishes = perMessage("spublish") + perMessage("publish");
    const roundTrips = perMessage("pubsub|shardnumsub") + perMessage("pubsub|numsub");
    const statements = (statementsAfter - statementsBefore) / MESSAGES;
    console.log(
      `      per message to ${MEMBERS - 1} recipients: ${publishes} publishes, ${roundTrips} node-count round trips, ${statements} receipt statements`,
    );
    // Per recipient it would be hundreds of each; a few is the message (its own-device copy
    // included) and the per-tick status batches of each node.
    expect(publishes).to.be.below(MEMBERS / 10);
    expect(roundTrips).to.be.below(MEMBERS / 10);
    expect(statements).to.be.below(MEMBERS / 10);
  });
});
