/**
 * The write path on its own, without sockets: how long one group commit of `--batch` text
 * messages takes (the three reads and the one write statement), on a table already holding
 * `--prefill` messages. With `--entries`, also batches of reactions and edits, which go
 * through the same statement. (It also ran EXPLAIN ANALYZE of the write statement, caught
 * through Knex's query event; the statement has run as a prepared pg statement since, out of
 * Knex's sight, and bench/investigations/explain.ts measures it as the server runs it.)
 *
 *   node --import tsx bench/investigations/appendCost.ts [--prefill 200000] [--batch 64] [--batches 300] [--entries]
 *
 * Needs PostgreSQL at TEST_DATABASE_ADMIN_URL (default: local, trust). Written to compare
 * two checkouts of the same code (docs/benchmarks.md, "Edits, deletes and reactions"): the
 * store is driven only through `append`, so the script runs against either schema.
 */
import { Client } from "pg";
import { v7 as uuidv7 } from "uuid";
import { createDatabase, migrateToLatest } from "../../src/storage/database";
import { SqlMessageStore } from "../../src/storage/SqlMessageStore";
import { createTestDatabase } from "../../test/helpers/database";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const PREFILL = arg("prefill", 200_000);
const BATCH = arg("batch", 64);
const BATCHES = arg("batches", 300);
const ENTRIES = process.argv.includes("--entries");
const PAIRS = 200;
const DAY = 86_400_000;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

async function main(): Promise<void> {
  const testDb = await createTestDatabase();
  const db = createDatabase({ kind: "postgres", url: testDb.url });
  const pg = new Client({ connectionString: testDb.url });
  try {
    await migrateToLatest(db, "postgres");
    await pg.connect();
    const store = new SqlMessageStore(db, { maxBatch: BATCH });
    let n = 0;
    const text = (i: number) => {
      const at = new Date();
      return {
        kind: "text" as const,
        id: uuidv7(),
        from: `u${i % PAIRS}`,
        clientMsgId: `c${n++}`,
        target: { to: `v${i % PAIRS}` },
        content: "x".repeat(100),
        createdAt: at,
        expiresAt: new Date(at.getTime() + 30 * DAY),
      };
    };
    const batch = <T>(make: (i: number) => T) => Promise.all(Array.from({ length: BATCH }, (_, i) => store.append(make(i) as never)));

    for (let done = 0; done < PREFILL; done += 256) {
      await Promise.all(Array.from({ length: 256 }, (_, i) => store.append(text(done + i) as never)));
    }
    await pg.query("VACUUM ANALYZE");

    const time = async (label: string, make: (i: number) => unknown) => {
      const ms: number[] = [];
      for (let b = 0; b < BATCHES; b++) {
        const started = process.hrtime.bigint();
        await batch(make);
        ms.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
      console.log(
        `${label}: ${BATCHES} batches of ${BATCH}: mean ${mean.toFixed(2)} ms, p50 ${quantile(ms, 0.5).toFixed(2)}, ` +
          `p99 ${quantile(ms, 0.99).toFixed(2)} ms per batch; ${Math.round((BATCH * 1000) / mean)} msg/s`,
      );
    };
    await time("text", text);

    if (ENTRIES) {
      // Reactions and edits on recent messages: the same group commit, the same statement.
      const recent = (await pg.query(`SELECT message_id, from_user_id, to_user_id FROM messages ORDER BY seq DESC, message_id LIMIT ${BATCH * 4}`)).rows;
      let k = 0;
      const entry = (i: number) => {
        const target = recent[(k++ * 7 + i) % recent.length]!;
        const edit = i % 4 === 0;
        return {
          kind: edit ? "edit" : "reaction",
          id: uuidv7(),
          from: edit ? target.from_user_id : target.to_user_id,
          clientMsgId: `e${n++}`,
          refId: target.message_id,
          content: edit ? "y".repeat(100) : "👍",
          createdAt: new Date(),
          windowMs: edit ? 15 * 60_000 : null,
        };
      };
      await time("entries (3 reactions : 1 edit)", entry);
    }
  } finally {
    await pg.end().catch(() => {});
    await db.destroy();
    await testDb.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
