import { expect } from "chai";
import { Client } from "pg";
import { printFigures, settle } from "../helpers/accounting";
import { liveInversions, withinOneProcess } from "../helpers/arrivalOrder";
import { FailoverRecipient } from "../helpers/failover";
import { planFlood, startFlood, startFloodClients } from "../helpers/flood";
import { uniqueId } from "../helpers/ids";
import { LogWatch } from "../helpers/logWatch";
import { sleep, waitFor } from "../helpers/wait";
import { spawnNode, type NodeProcess } from "../helpers/processes";
import { startPrivatePostgres, type PrivatePostgres } from "../helpers/privatePostgres";

const SENDERS = 50;
const RECIPIENTS = 50;
const PER_SENDER = 200; // 10 000 messages, as in case 1
const OUTAGE_AT = 0.3;
const OUTAGE_MS = 4000;

/**
 * Case 2. One node on a private PostgreSQL cluster (the machine's shared server is never
 * touched). A third of the way into a flood the database is stopped (`-m immediate`: a
 * crash, as far as clients can tell) for a few seconds, then started again.
 */
describe("fault: PostgreSQL stopped for a few seconds during a flood", function () {
  this.timeout(300_000);
  let pgServer: PrivatePostgres | undefined;
  let pg: Client | undefined;
  let node: NodeProcess | undefined;
  let watch: LogWatch | undefined;
  const clients: { close(): void }[] = [];
  let databaseUrl = "";

  before(async () => {
    pgServer = await startPrivatePostgres();
    const admin = new Client({ connectionString: pgServer.adminUrl });
    await admin.connect();
    await admin.query("CREATE DATABASE ticks_faults");
    await admin.end();
    const url = new URL(pgServer.adminUrl);
    url.pathname = "/ticks_faults";
    databaseUrl = url.toString();
    node = await spawnNode({
      DATABASE_URL: databaseUrl,
      AUTH_MODE: "dev",
      RATE_LIMIT_EVENTS_PER_SEC: "0",
      REDELIVERY_AFTER_MS: "2000",
      DELIVERY_ACK_TIMEOUT_MS: "3000",
    });
    watch = new LogWatch(node);
  });

  after(async () => {
    clients.splice(0).forEach((c) => c.close());
    if (watch) console.log(`      ${watch.summary()}`);
    await node?.kill("SIGKILL").catch(() => {});
    await pg?.end().catch(() => {});
    await pgServer?.destroy().catch((err) => console.log(`could not remove the private PostgreSQL: ${err}`));
  });

  it("answers UNAVAILABLE (never a false ok) while the database is down and stores every retry once", async () => {
    const n = node!;
    const urls = [n.url];
    const { senders, recipients } = await startFloodClients(urls, { senders: SENDERS, recipients: RECIPIENTS }, clients);
    // One more recipient, offline until the database is down: it connects during the outage
    // and must drain its backlog once the database is back.
    const late = new FailoverRecipient(urls, uniqueId("late"), 0);
    clients.push(late);
    expect((await fetch(`${n.url}/readyz`)).status, "ready before the outage").to.equal(200);

    const intents = planFlood(
      senders,
      [...recipients, late].map((r) => r.userId),
      PER_SENDER,
      "pgdown",
    );
    const { stats, done } = startFlood(senders, intents, { retryDelayMs: 250 });
    await waitFor(() => stats.acked >= intents.length * OUTAGE_AT, () => `the flood under way (${stats.acked} of ${intents.length} acknowledged)`, 120_000);

    // The outage, with /readyz polled throughout.
    const ackedAtStop = stats.acked;
    const unavailableBefore = stats.unavailable;
    await pgServer!.stop();
    const stoppedAt = Date.now();
    // Oks that raced the stop (commits already under way) are fine if stored (checked below
    // for every ok). Once `pg_ctl stop` has returned nothing can commit: an ok arriving
    // a second later or more, before the restart, could only be a false one.
    const okDuringStopCall = stats.acked - ackedAtStop;
    const ackedWhenStopped = stats.acked;
    await late.start();
    const lateSyncsDuringOutage = late.syncs;
    const readyDuring: number[] = [];
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      readyDuring.push((await fetch(`${n.url}/readyz`)).status);
      await sleep(250);
    }
    const okWhileStopped = stats.acked - ackedWhenStopped;
    const restartBeganAt = Date.now();
    const unavailableDuringOutage = stats.unavailable - unavailableBefore;
    expect((await fetch(`${n.url}/healthz`)).status, "/healthz while the database is down").to.equal(200);
    await pgServer!.start();
    const restartedAt = Date.now();
    let readyAfter = 0;
    // Asserted below (readyAfter), after the figures are printed.
    await waitFor(async () => (readyAfter = (await fetch(`${n.url}/readyz`)).status) === 200, "/readyz 200", 20_000, 200).catch(() => {});
    const readyAfterMs = Date.now() - restartedAt;

    const finished = await Promise.race([done.then(() => true), sleep(180_000).then(() => false)]);
    const floodMs = (stats.finishedAt ?? Date.now()) - stats.startedAt;
    pg = new Client({ connectionString: databaseUrl });
    await pg.connect();
    const { figures, settledMs, settled } = await settle(pg, stats, [...recipients, late], 60_000);
    const oneProcess = withinOneProcess([...recipients, late], senders);
    // The server process stays up and there is no Redis: a database outage is no reason for
    // live messages to leave seq order, so there is no fault window for order.
    const live = liveInversions([...recipients, late].map((r) => r.order));
    const lateExpected = intents.filter((i) => i.to === late.userId).length;
    const retried = intents.filter((i) => i.unavailable > 0);
    const okLateInOutage = intents.filter((i) => i.ackedAt && i.ackedAt > stoppedAt + 1000 && i.ackedAt < restartBeganAt).length;
    const retriedStoredOnce = (
      await pg.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (
           SELECT from_user_id, client_msg_id FROM messages
           WHERE (from_user_id, client_msg_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           GROUP BY 1, 2 HAVING count(*) = 1) x`,
        [retried.map((i) => i.from), retried.map((i) => i.clientMsgId)],
      )
    ).rows[0]!.n;

    printFigures("2 PostgreSQL outage", figures, {
      senders: SENDERS,
      recipients: RECIPIENTS,
      outageMs: restartedAt - stoppedAt,
      ackedAtStop,
      okDuringStopCall,
      okWhileStopped,
      okLateInOutage,
      unavailableDuringOutage,
      unavailableTotal: stats.unavailable,
      messagesRetriedAfterUnavailable: retried.length,
      retriedStoredOnce,
      lateRecipient: `${late.received.size}/${lateExpected}`,
      lateBacklogRaw: late.backlogRaw,
      readyzDuring: summarize(readyDuring),
      readyzAfter: readyAfter,
      readyAfterMs,
      floodMs,
      settleMs: settledMs,
      retriesExhausted: senders.reduce((k, s) => k + s.exhausted, 0),
      backlogRaw: recipients.reduce((k, r) => k + r.backlogRaw, 0),
      liveRaw: recipients.reduce((k, r) => k + r.liveRaw, 0),
      oneProcessConversations: oneProcess.conversations,
      oneProcessInversions: oneProcess.inversions,
      liveInversions: live.outside,
    });

    expect(n.child.exitCode, "the node never crashed").to.equal(null);
    expect(n.child.signalCode).to.equal(null);
    expect(finished, "every sender finished").to.equal(true);
    expect(okLateInOutage, "ok answers 1 s or more into the outage").to.equal(0);
    expect(unavailableDuringOutage, "UNAVAILABLE answers during the outage").to.be.greaterThan(0);
    expect(readyDuring.length).to.be.greaterThan(0);
    // The first probe can race the stop by a few ms; after that: 503 every time.
    expect(readyDuring.slice(1).filter((s) => s !== 503), `/readyz answers other than 503 during the outage, of ${readyDuring.join(",")}`).to.deep.equal([]);
    expect(readyAfter, "/readyz after the restart").to.equal(200);
    expect(lateSyncsDuringOutage, "no sync:complete while the backlog cannot be read").to.equal(0);
    expect(late.received.size, "the device that connected during the outage got its backlog").to.equal(lateExpected);
    expect(figures.ackedLost, "acknowledged but not stored (a false ok)").to.equal(0);
    expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
    expect(figures.okIdMismatch).to.equal(0);
    expect(figures.otherErrors, "answers other than ok / UNAVAILABLE").to.equal(0);
    expect(retriedStoredOnce, "messages retried after UNAVAILABLE, stored exactly once").to.equal(retried.length);
    expect(figures.acknowledged).to.equal(intents.length);
    expect(figures.notStored).to.equal(0);
    expect(figures.storedRows).to.equal(intents.length);
    expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
    expect(figures.misaddressed).to.equal(0);
    expect(figures.undelivered, "addressed but never received").to.equal(0);
    // Order (docs/protocol.md "Ordering and gaps"): backlog pages in seq order; a client that
    // orders by seq, as the SDK does, holds every conversation 1..n in order.
    expect(figures.backlogInversions, "backlog messages out of seq order within a sync").to.equal(0);
    expect(figures.orderedIncomplete, "conversations a seq-ordering client would not hold complete and in order").to.equal(0);
    // Live order: the node and its (absent) Redis stay up, so every live arrival is in seq order.
    expect(live.outside, "live arrivals out of seq order").to.equal(0);
    expect(oneProcess.conversations, "conversations served by one process end to end").to.be.greaterThan(0);
    expect(oneProcess.inversions, "out-of-seq arrivals within one process's live stream").to.equal(0);
    expect(figures.sentLeft, `message_delivery rows still 'sent' after ${settled ? "settling" : "the 60 s settle timeout"}`).to.equal(0);
  });
});

function summarize(statuses: number[]): string {
  const counts = new Map<number, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, k]) => `${s}x${k}`).join("+");
}
