/**
 * What one hot-path statement costs the database backend, split into user and system CPU
 * (/proc/<pid>/stat of the backends), for batches of 1, 11 and 100: the fixed cost of a
 * statement against its cost per message (docs/benchmarks.md, "Lanes that open under load").
 * Each round appends `size` messages (one group commit, one statement), then marks them
 * delivered (one statement). Clock ticks are 10 ms: use enough rounds.
 *
 *   node --import tsx bench/investigations/stmtCost.ts   # SIZES=1,11,100 ROUNDS=300
 */
import { readFileSync } from "node:fs";
import { Client } from "pg";
import { v7 as uuidv7 } from "uuid";
import { createDatabase, createHotPathDatabase, migrateToLatest } from "../../src/storage/database";
import { SqlMessageStore } from "../../src/storage/SqlMessageStore";
import { createTestDatabase } from "../../test/helpers/database";

const ROUNDS = Number(process.env.ROUNDS ?? 300);
const SIZES = (process.env.SIZES ?? "1,11,100").split(",").map(Number);
const TICK = 100; // USER_HZ
const PAIRS = Number(process.env.PAIRS ?? 50);

function cpuOf(pids: number[]): { user: number; sys: number } {
  let user = 0, sys = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      user += Number(f[11]); sys += Number(f[12]);
    } catch { /* gone */ }
  }
  return { user: (user * 1000) / TICK, sys: (sys * 1000) / TICK };
}

async function main(): Promise<void> {
  const testDb = await createTestDatabase();
  const db = createDatabase({ kind: "postgres", url: testDb.url });
  const pg = new Client({ connectionString: testDb.url });
  const hot = createHotPathDatabase({ kind: "postgres", url: testDb.url } as never, db, 1);
  try {
    await migrateToLatest(db, "postgres");
    await pg.connect();
    const store = new SqlMessageStore(db, { hotPath: hot, maxBatch: 256, appendLanes: 1 });
    let n = 0;
    const text = (i: number) => ({
      kind: "text" as const, id: uuidv7(), from: `u${i % PAIRS}`, clientMsgId: `c${n++}`,
      target: { to: `v${i % PAIRS}` }, content: "x".repeat(100), createdAt: new Date(),
      expiresAt: new Date(Date.now() + 30 * 86_400_000),
    });
    // Warm: pairs exist, plans generic.
    for (let r = 0; r < 20; r++) await Promise.all(Array.from({ length: PAIRS }, (_, i) => store.append(text(i) as never)));
    const backends = async () => (await pg.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)).rows.map((r) => r.pid as number);
    for (const size of SIZES) {
      const pids = await backends();
      let a0 = cpuOf(pids); let wall = 0; let aUser = 0, aSys = 0, dUser = 0, dSys = 0;
      for (let r = 0; r < ROUNDS; r++) {
        const reqs = Array.from({ length: size }, (_, i) => text(i));
        const t0 = process.hrtime.bigint();
        const results = await Promise.all(reqs.map((q) => store.append(q as never)));
        wall += Number(process.hrtime.bigint() - t0) / 1e6;
        const a1 = cpuOf(pids); aUser += a1.user - a0.user; aSys += a1.sys - a0.sys; a0 = a1;
        await Promise.all(results.map((res, i) => store.markDelivered(`v${i % PAIRS}`, [res.message.id], new Date())));
        const a2 = cpuOf(pids); dUser += a2.user - a0.user; dSys += a2.sys - a0.sys; a0 = a2;
      }
      const per = (x: number) => (x / ROUNDS).toFixed(3);
      console.log(`batch ${size}: append user ${per(aUser)} sys ${per(aSys)} ms/stmt; delivered user ${per(dUser)} sys ${per(dSys)} ms/stmt; append wall ${per(wall)} ms`);
    }
  } finally {
    await pg.end().catch(() => {});
    await hot.destroy();
    await db.destroy();
    await testDb.drop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
