import { expect } from "chai";
import { Client } from "pg";
import { createTestDatabase, type TestDatabase } from "../helpers/database";
import { uniqueId } from "../helpers/device";
import {
  FailoverRecipient,
  FailoverSender,
  LogWatch,
  planFlood,
  printFigures,
  settle,
  sleep,
  spread,
  startFlood,
  waitUntil,
} from "../helpers/flood";
import { spawnNode, startPrivateRedis, type NodeProcess, type RedisProcess } from "../helpers/processes";

const SENDERS = 50;
const RECIPIENTS = 50;
const PER_SENDER = 200; // 10 000 messages in all
const KILL_AT = 0.3; // share of the flood acknowledged when the node dies

/**
 * Case 1. Two server processes share one database and a private Redis; 50 senders and 50
 * recipients are spread over both. A third of the way into a 10 000-message flood one node
 * gets SIGKILL. Every client fails over to the survivor, senders re-send what was not
 * acknowledged with the same clientMsgId, recipients drain their backlog there.
 */
describe("fault: kill -9 one of two nodes during a flood", function () {
  this.timeout(300_000);
  let db: TestDatabase | undefined;
  let redis: RedisProcess | undefined;
  let pg: Client | undefined;
  let nodes: NodeProcess[] = [];
  let watches: LogWatch[] = [];
  const clients: { close(): void }[] = [];

  const env = () => ({
    DATABASE_URL: db!.url,
    REDIS_URL: redis!.url,
    AUTH_MODE: "dev",
    RATE_LIMIT_EVENTS_PER_SEC: "0",
    REDELIVERY_AFTER_MS: "2000",
    DELIVERY_ACK_TIMEOUT_MS: "3000",
    PRESENCE_TTL_MS: "3000",
    LEADER_LEASE_MS: "2000",
  });

  before(async () => {
    db = await createTestDatabase();
    redis = await startPrivateRedis();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
    nodes = await Promise.all([spawnNode(env()), spawnNode(env())]);
    watches = nodes.map((n) => new LogWatch(n));
  });

  after(async () => {
    clients.splice(0).forEach((c) => c.close());
    for (const w of watches) console.log(`      ${w.summary()}`);
    await Promise.allSettled(nodes.map((n) => n.kill("SIGKILL")));
    await pg?.end().catch(() => {});
    await redis?.stop().catch(() => {});
    await db?.drop().catch((err) => console.log(`could not drop ${db?.name}: ${err}`));
  });

  it("loses nothing acknowledged, stores each message once and delivers each once after de-dup", async () => {
    const urls = nodes.map((n) => n.url);
    const recipients = spread(RECIPIENTS, (i, start) => new FailoverRecipient(urls, uniqueId(`r${i}`), start), urls.length);
    const senders = spread(
      SENDERS,
      (i, start) => new FailoverSender(urls, uniqueId(`s${i}`), start, { retries: 10, ackTimeout: 2000 }),
      urls.length,
    );
    clients.push(...recipients, ...senders);
    await Promise.all(recipients.map((r) => r.startSynced()));
    await Promise.all(senders.map((s) => s.start()));

    const intents = planFlood(
      senders,
      recipients.map((r) => r.userId),
      PER_SENDER,
      "kill",
    );
    const { stats, done } = startFlood(senders, intents);
    expect(await waitUntil(() => stats.acked >= intents.length * KILL_AT, 120_000), "flood under way").to.equal(true);
    const victim = nodes[1]!;
    const ackedAtKill = stats.acked;
    const killedAt = Date.now();
    await victim.kill("SIGKILL");

    const finished = await Promise.race([done.then(() => true), sleep(180_000).then(() => false)]);
    const floodMs = (stats.finishedAt ?? Date.now()) - stats.startedAt;
    const { figures, settledMs, settled } = await settle(pg!, stats, recipients, 60_000);

    printFigures("1 kill -9 node", figures, {
      senders: SENDERS,
      recipients: RECIPIENTS,
      ackedAtKill,
      floodMs,
      afterKillMs: (stats.finishedAt ?? Date.now()) - killedAt,
      settleMs: settledMs,
      senderFailovers: senders.reduce((n, s) => n + s.failovers, 0),
      recipientFailovers: recipients.reduce((n, r) => n + r.failovers, 0),
      retriesExhausted: senders.reduce((n, s) => n + s.exhausted, 0),
      emits: senders.reduce((n, s) => n + s.emits, 0),
      backlogRaw: recipients.reduce((n, r) => n + r.backlogRaw, 0),
      liveRaw: recipients.reduce((n, r) => n + r.liveRaw, 0),
    });

    expect(finished, "every sender finished").to.equal(true);
    expect(figures.ackedLost, "acknowledged but not stored").to.equal(0);
    expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
    expect(figures.okIdMismatch, "one clientMsgId acknowledged with two ids").to.equal(0);
    expect(figures.otherErrors, "sends refused for good").to.equal(0);
    expect(figures.acknowledged, "acknowledged").to.equal(intents.length);
    expect(figures.notStored, "intended but never stored").to.equal(0);
    expect(figures.storedRows, "stored rows").to.equal(intents.length);
    expect(figures.strayRows).to.equal(0);
    expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
    expect(figures.misaddressed, "messages received by the wrong user").to.equal(0);
    expect(figures.undelivered, "addressed but never received").to.equal(0);
    expect(figures.delivered).to.equal(intents.length);
    expect(settled && figures.sentLeft, "message_delivery rows still 'sent' after settling").to.equal(0);
    expect(nodes[0]!.child.exitCode, "the survivor is still running").to.equal(null);
    expect(senders.some((s) => s.failovers > 0) && recipients.some((r) => r.failovers > 0), "clients failed over").to.equal(true);
  });
});
