import { expect } from "chai";
import type { Figures } from "../helpers/accounting";
import { sleep } from "../helpers/wait";
import { startBed, type Bed } from "./bed";
import { emptyTables, finish, hostsOfUsers, startHostFlood, untilAcked, window, type HostFlood } from "./hostFlood";
import { cut, heal, type HostName } from "./network";

const APP_HOSTS = 3;
const PER_SENDER = 200; // 50 senders: 10 000 messages a case
/** 30 000: the flood outlasts the whole deploy (about 25 s for three hosts here), every host goes mid-flood. */
const PER_SENDER_ROLLING = 600;
const CUT_MS = 5000;
/** Longer than DATABASE_TIMEOUT_MS (5 s), so that the cut host's queries time out within it. */
const PG_CUT_MS = 10_000;
/** The bound for a whole host's death with PRESENCE_TTL_MS=3000. */
const HOST_DEATH_BOUND_MS = 8000;

/**
 * Several hosts behind nginx (test/hosts/bed.ts): a database host, three app hosts with PM2
 * and 2 workers each, a load balancer. Each case floods 10 000 messages through nginx and
 * breaks something at host scale a third of the way in. Server settings are the defaults
 * but PRESENCE_TTL_MS=3000: redelivery (30 s) is not what rescues a dead host's messages.
 */
describe("hosts: three app hosts behind nginx, faults at host scale", function () {
  this.timeout(600_000);
  let bed: Bed;
  let flood: HostFlood | undefined;

  before(async function () {
    this.timeout(300_000);
    bed = await startBed({ appHosts: APP_HOSTS, env: { PRESENCE_TTL_MS: "3000" } });
  });
  beforeEach(async () => {
    await emptyTables(bed);
  });
  afterEach(async function () {
    flood?.close();
    flood = undefined;
    if (this.currentTest?.state === "failed") for (const h of bed.appHosts) console.log(bed.logs(h));
    // The next case starts with every host up.
    for (const h of bed.appHosts) if ((await bed.readyz(h)) !== 200) await bed.startApp(h).catch((err) => console.log(String(err)));
  });
  after(async function () {
    this.timeout(120_000);
    await bed?.teardown();
  });

  it("a whole host dies (SIGKILL to its PM2 daemon and workers): clients move through nginx, nothing acked is lost", async () => {
    flood = await startHostFlood(bed, PER_SENDER, "hostdeath");
    await untilAcked(flood, 0.3);
    const victim: HostName = "app2";
    const onVictim = [...(await hostsOfUsers(bed))].filter(([, h]) => h === victim).length;
    const killedAt = Date.now();
    const pids = await bed.killApp(victim);
    const ackedAtKill = flood.stats.acked;
    const result = await finish(bed, flood, "host dies", () => ({
      killedPids: pids.length,
      clientsOnVictim: onVictim,
      ackedAtKill,
      killToLastAckMs: Math.max(...flood!.stats.intents.map((i) => i.ackedAt ?? 0)) - killedAt,
    }));
    expectNothingLost(result.figures, flood.total, result);
    expect(onVictim, "clients were on the victim host").to.be.greaterThan(0);
    expect(result.lastAckToLastDeliveryMs, "ms from the last ack to the last delivery").to.be.at.most(HOST_DEATH_BOUND_MS);
  });

  it("one host is cut off from Redis, then healed: both sides keep sending, everything is delivered after", async () => {
    flood = await startHostFlood(bed, PER_SENDER, "rediscut");
    await untilAcked(flood, 0.3);
    const cutHost: HostName = "app1";
    const { cutSide, otherSide } = await sides(bed, cutHost);
    const cutAt = Date.now();
    await cut(cutHost, bed.ipOf("db"), 6379);
    await sleep(CUT_MS / 2);
    const readyDuring = await readyAll(bed);
    await sleep(CUT_MS / 2);
    await heal(cutHost, 6379);
    const healedAt = Date.now();
    const readyzAfter = await readyAllWithin(bed, 15_000);
    const during = sideFigures(flood, cutSide, otherSide, cutAt, healedAt);
    const result = await finish(bed, flood, "Redis cut", () => ({
      ...during,
      cutMs: healedAt - cutAt,
      readyzDuring: readyDuring,
      readyzAfter,
    }));
    expectNothingLost(result.figures, flood.total, result);
    // Its Redis commands time out (1 s) instead of hanging: sends there are still stored and acknowledged.
    expect(during.cutHostAckedDuring, "sends acknowledged on the cut host during the cut").to.be.greaterThan(0);
    expect(during.elsewhereAckedDuring, "sends acknowledged elsewhere during the cut").to.be.greaterThan(0);
  });

  it("one host is cut off from PostgreSQL: its clients get UNAVAILABLE, never a false ok", async () => {
    flood = await startHostFlood(bed, PER_SENDER, "pgcut");
    await untilAcked(flood, 0.3);
    const cutHost: HostName = "app3";
    const { cutSide, otherSide } = await sides(bed, cutHost);
    const cutAt = Date.now();
    await cut(cutHost, bed.ipOf("db"), 5432);
    await sleep(PG_CUT_MS / 2);
    const readyDuring = await readyAll(bed);
    await sleep(PG_CUT_MS / 2);
    await heal(cutHost, 5432);
    const healedAt = Date.now();
    const readyzAfter = await readyAllWithin(bed, 15_000);
    const during = sideFigures(flood, cutSide, otherSide, cutAt, healedAt);
    const result = await finish(bed, flood, "PostgreSQL cut", () => ({
      ...during,
      cutHostFirstAckAfterHealMs: firstAckAfter(flood!, cutSide, healedAt),
      cutMs: healedAt - cutAt,
      readyzDuring: readyDuring,
      readyzAfter,
    }));
    expectNothingLost(result.figures, flood.total, result);
    // DATABASE_TIMEOUT_MS (5 s): a query on the cut connection fails as UNAVAILABLE instead of hanging.
    expect(during.cutHostUnavailable, "UNAVAILABLE answers on the cut host").to.be.greaterThan(0);
    expect(during.elsewhereAckedDuring, "the other hosts keep acknowledging").to.be.greaterThan(0);
    expect(readyDuring, "/readyz of the cut host during the cut (503, or no answer within 3 s)").to.not.match(new RegExp(`${cutHost}:200`));
  });

  it("a rolling deploy, one host at a time, mid-flood, loses nothing", async () => {
    flood = await startHostFlood(bed, PER_SENDER_ROLLING, "rolling");
    await untilAcked(flood, 0.1);
    const steps: string[] = [];
    for (const host of bed.appHosts) {
      const started = Date.now();
      await bed.stopApp(host);
      const stopped = Date.now();
      await bed.startApp(host);
      const clock = (t: number) => new Date(t).toISOString().slice(11, 19);
      steps.push(`${host}:stop=${clock(started)}+${stopped - started}ms,start=${Date.now() - stopped}ms,ackedBy=${flood.stats.acked}`);
    }
    const deployedAt = Date.now();
    const result = await finish(bed, flood, "rolling deploy", () => ({ steps: steps.join(";") }));
    expectNothingLost(result.figures, flood.total, result);
    expect(flood.stats.finishedAt ?? 0, "the flood was still running when the last host came back").to.be.greaterThan(deployedAt);
  });
});

async function sides(bed: Bed, cutHost: HostName) {
  const byUser = await hostsOfUsers(bed);
  const cutSide = new Set([...byUser].filter(([, h]) => h === cutHost).map(([u]) => u));
  const otherSide = new Set([...byUser].filter(([, h]) => h !== cutHost).map(([u]) => u));
  return { cutSide, otherSide };
}

function sideFigures(flood: HostFlood, cutSide: Set<string>, otherSide: Set<string>, from: number, to: number) {
  const c = window(flood, cutSide, from, to);
  const o = window(flood, otherSide, from, to);
  return {
    clientsOnCutHost: cutSide.size,
    clientsElsewhere: otherSide.size,
    cutHostAckedDuring: c.acked,
    cutHostReceivedDuring: c.received,
    cutHostUnavailable: c.unavailable,
    elsewhereAckedDuring: o.acked,
    elsewhereReceivedDuring: o.received,
    elsewhereUnavailable: o.unavailable,
  };
}

/** Every host's /readyz once all answer 200, or as they are after `ms`. */
async function readyAllWithin(bed: Bed, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = await readyAll(bed);
    if (!/:(?!200)\d+/.test(now) || Date.now() > deadline) return now;
    await sleep(200);
  }
}

/** ms from `at` to the first acknowledgement a sender on `side` got after it (-1: none). */
function firstAckAfter(flood: HostFlood, side: Set<string>, at: number): number {
  const after = flood.stats.intents.filter((i) => side.has(i.from) && (i.ackedAt ?? 0) >= at).map((i) => i.ackedAt!);
  return after.length ? Math.min(...after) - at : -1;
}

async function readyAll(bed: Bed): Promise<string> {
  return (await Promise.all(bed.appHosts.map(async (h) => `${h}:${await bed.readyz(h)}`))).join(",");
}

function expectNothingLost(figures: Figures, total: number, result: { finished: boolean; settled: boolean }): void {
  expect(result.finished, "every sender finished").to.equal(true);
  expect(figures.ackedLost, "acknowledged but not stored (a false ok)").to.equal(0);
  expect(figures.okIdMismatch, "one clientMsgId acknowledged with two ids").to.equal(0);
  expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
  expect(figures.otherErrors, "sends refused for good").to.equal(0);
  expect(figures.acknowledged, "acknowledged").to.equal(total);
  expect(figures.storedRows, "stored rows").to.equal(total);
  expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
  expect(figures.misaddressed).to.equal(0);
  expect(figures.undelivered, "addressed but never received").to.equal(0);
  expect(figures.sentLeft, `message_delivery rows still 'sent' after ${result.settled ? "settling" : "the settle timeout"}`).to.equal(0);
}
