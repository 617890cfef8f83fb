/**
 * What one hot-path statement costs the database backend in CPU (user + system, from
 * /proc/<pid>/stat of the database's backends), for batches of 1, 11 and 100: the fixed cost
 * of a statement against its cost per message (docs/benchmarks.md, "Lanes that open under
 * load"). Each round appends `size` messages (one group commit, one statement), then marks
 * them delivered (one statement). Clock ticks are 10 ms: use enough rounds.
 *
 *   node --import tsx bench/investigations/stmtCost.ts   # SIZES=1,11,100 ROUNDS=300 PAIRS=50
 *
 * PAIRS is how many conversations a batch is spread over (PAIRS=200 SIZES=200: one message
 * per conversation, as on a busy server). PAST_DAYS=30 first creates the day partitions of
 * the last 30 days, as a server that has run for a month has them, in place of the empty
 * legacy partition a fresh database has for the past (as the history seed does).
 */
import { v7 as uuidv7 } from "uuid";
import type { AppendRequest } from "../../src/messaging/ports";
import { createDatabase, createHotPathDatabase, migrateToLatest } from "../../src/storage/database";
import { SqlMessageStore } from "../../src/storage/SqlMessageStore";
import { ADMIN_URL, createTestDatabase } from "../../test/helpers/database";
import { DbProbe } from "../lib/phase";
import { ensureDayPartitions } from "../lib/seedPartitions";
import { Client } from "pg";
import { cpuBetween, cpuSnapshot } from "../lib/procs";

const ROUNDS = Number(process.env.ROUNDS ?? 300);
const SIZES = (process.env.SIZES ?? "1,11,100").split(",").map(Number);
const PAIRS = Number(process.env.PAIRS ?? 50);
const PAST_DAYS = Number(process.env.PAST_DAYS ?? 0);
const DAY = 86_400_000;

async function main(): Promise<void> {
  const testDb = await createTestDatabase();
  const db = createDatabase({ kind: "postgres", url: testDb.url });
  const hot = createHotPathDatabase({ kind: "postgres", url: testDb.url }, db, 1);
  const probe = await DbProbe.open(ADMIN_URL, testDb.name);
  try {
    await migrateToLatest(db, "postgres");
    if (PAST_DAYS > 0) {
      const c = new Client({ connectionString: testDb.url });
      await c.connect();
      try {
        const created = await ensureDayPartitions(c, testDb.url, Date.now() - PAST_DAYS * DAY, Date.now());
        console.log(`${created.length} past day partitions created`);
      } finally {
        await c.end();
      }
    }
    const store = new SqlMessageStore(db, { hotPath: hot, maxBatch: 256, appendLanes: 1 });
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
    for (let r = 0; r < 20; r++) await Promise.all(Array.from({ length: PAIRS }, (_, i) => store.append(text(i))));
    for (const size of SIZES) {
      const pids = await probe.pids();
      let appendMs = 0;
      let deliveredMs = 0;
      let wallMs = 0;
      for (let r = 0; r < ROUNDS; r++) {
        const before = cpuSnapshot(pids);
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: size }, (_, i) => store.append(text(i))));
        wallMs += performance.now() - t0;
        const appended = cpuSnapshot(pids);
        await Promise.all(results.map((res, i) => store.markDelivered(`v${i % PAIRS}`, [res.message.id], new Date())));
        appendMs += cpuBetween(before, appended);
        deliveredMs += cpuBetween(appended, cpuSnapshot(pids));
      }
      const per = (ms: number) => (ms / ROUNDS).toFixed(3);
      console.log(`batch ${size}: append ${per(appendMs)} ms CPU/stmt, delivered ${per(deliveredMs)} ms CPU/stmt; append wall ${per(wallMs)} ms`);
    }
  } finally {
    await probe.close();
    await hot.destroy();
    await db.destroy();
    await testDb.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
