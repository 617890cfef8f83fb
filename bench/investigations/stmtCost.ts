/**
 * What one hot-path statement costs the database backend in CPU (the backends' run time in
 * nanoseconds: bench/lib/procs.ts, singleThreadCpuMs), for batches of 1, 11 and 100: the fixed cost of a
 * statement against its cost per message (docs/benchmarks.md, "Lanes that open under
 * load"). Each round appends `size` messages (one group commit, one statement), then marks
 * them delivered (one statement).
 *
 *   node --import tsx bench/investigations/stmtCost.ts   # SIZES=1,11,100 ROUNDS=300 PAIRS=50
 *
 * PAIRS is how many conversations a batch is spread over (PAIRS=200 SIZES=200: one message
 * per conversation, as on a busy server). PAST_DAYS=30 adds a second database that first
 * gets the day partitions of the last 30 days, as a server that has run for a month has
 * them (in place of the empty legacy partition a fresh database has for the past, as the
 * history seed does); the two databases take turns round by round, so both columns see the
 * same machine (docs/benchmarks.md, "A slow day, and where issue 23 stops").
 */
import { Client } from "pg";
import { v7 as uuidv7 } from "uuid";
import type { AppendRequest } from "../../src/messaging/ports";
import { createDatabase, createHotPathDatabase, migrateToLatest, type Database } from "../../src/storage/database";
import { SqlMessageStore } from "../../src/storage/SqlMessageStore";
import { ADMIN_URL, createTestDatabase, type TestDatabase } from "../../test/helpers/database";
import { DbProbe } from "../lib/phase";
import { ensureDayPartitions } from "../lib/seedPartitions";
import { cpuBetween, cpuSnapshot, singleThreadCpuMs } from "../lib/procs";

const ROUNDS = Number(process.env.ROUNDS ?? 300);
const SIZES = (process.env.SIZES ?? "1,11,100").split(",").map(Number);
const PAIRS = Number(process.env.PAIRS ?? 50);
const PAST_DAYS = Number(process.env.PAST_DAYS ?? 0);
const DAY = 86_400_000;

type Side = { name: string; testDb: TestDatabase; db: Database; hot: Database; probe: DbProbe; store: SqlMessageStore };

async function openSide(name: string, pastDays: number): Promise<Side> {
  const testDb = await createTestDatabase();
  const db = createDatabase({ kind: "postgres", url: testDb.url });
  const hot = createHotPathDatabase({ kind: "postgres", url: testDb.url }, db, 1);
  await migrateToLatest(db, "postgres");
  if (pastDays > 0) {
    const c = new Client({ connectionString: testDb.url });
    await c.connect();
    try {
      const created = await ensureDayPartitions(c, testDb.url, Date.now() - pastDays * DAY, Date.now());
      console.log(`${name}: ${created.length} past day partitions created`);
    } finally {
      await c.end();
    }
  }
  const store = new SqlMessageStore(db, { hotPath: hot, maxBatch: 256, appendLanes: 1 });
  return { name, testDb, db, hot, probe: await DbProbe.open(ADMIN_URL, testDb.name), store };
}

async function closeSide(side: Side): Promise<void> {
  await side.probe.close();
  await side.hot.destroy();
  await side.db.destroy();
  await side.testDb.drop();
}

async function main(): Promise<void> {
  const sides: Side[] = [];
  try {
    sides.push(await openSide("fresh", 0));
    if (PAST_DAYS > 0) sides.push(await openSide(`${PAST_DAYS} past days`, PAST_DAYS));
    let n = 0;
    const text = (i: number): AppendRequest => ({
      kind: "text",
      id: uuidv7(),
      from: `u${i % PAIRS}`,
      clientMsgId: `c${n++}`,
      target: { to: `v${i % PAIRS}` },
      content: "x".repeat(100),
      createdAt: new Date(),
      expiresAt: new Date(Date.now() + 30 * DAY),
      media: null,
    });
    // Warm: every pair exists, every plan is the generic one.
    for (const { store } of sides) {
      for (let r = 0; r < 20; r++) await Promise.all(Array.from({ length: PAIRS }, (_, i) => store.append(text(i))));
    }
    for (const size of SIZES) {
      const totals = sides.map(() => ({ append: 0, delivered: 0, wall: 0 }));
      const pids = await Promise.all(sides.map((s) => s.probe.pids()));
      for (let r = 0; r < ROUNDS; r++) {
        for (const [k, { store }] of sides.entries()) {
          const t0 = performance.now();
          const before = cpuSnapshot(pids[k]!, singleThreadCpuMs);
          const results = await Promise.all(Array.from({ length: size }, (_, i) => store.append(text(i))));
          const appended = cpuSnapshot(pids[k]!, singleThreadCpuMs);
          totals[k]!.wall += performance.now() - t0;
          await Promise.all(results.map((res, i) => store.markDelivered(`v${i % PAIRS}`, [res.message.id], new Date())));
          totals[k]!.append += cpuBetween(before, appended);
          totals[k]!.delivered += cpuBetween(appended, cpuSnapshot(pids[k]!, singleThreadCpuMs));
        }
      }
      const per = (ms: number) => (ms / ROUNDS).toFixed(3);
      for (const [k, t] of totals.entries()) {
        console.log(`${sides[k]!.name}, batch ${size}: append ${per(t.append)} ms CPU/stmt, delivered ${per(t.delivered)} ms CPU/stmt; append wall ${per(t.wall)} ms`);
      }
    }
  } finally {
    for (const side of sides) await closeSide(side);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
