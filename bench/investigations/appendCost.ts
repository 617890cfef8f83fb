/**
 * The write path on its own, without sockets: how long one group commit of `--batch` text
 * messages takes (the three reads and the one write statement), on a table already holding
 * `--prefill` messages, plus EXPLAIN ANALYZE of one write statement. With `--entries`, also
 * batches of reactions and edits, which go through the same statement.
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

    // One more text batch, with the write statement captured for EXPLAIN ANALYZE.
    let captured: { sql: string; bindings: unknown[] } | undefined;
    const capture = (q: { sql: string; bindings: unknown[] }) => {
      if (/INSERT INTO message_delivery/.test(q.sql)) captured = q;
    };
    db.on("query", capture);
    await batch(text);
    db.off("query", capture);
    // EXPLAIN ANALYZE of the same batch, EXPLAINS times, each under fresh ids and clientMsgIds
    // (the first and fifth arrays; else the unique keys refuse it) and rolled back: medians of
    // planning and execution time, and one plan's trigger lines.
    const EXPLAINS = arg("explains", 30);
    const planning: number[] = [];
    const execution: number[] = [];
    let lines: string[] = [];
    for (let e = 0; e < EXPLAINS; e++) {
      const bindings = [...captured!.bindings] as unknown[][];
      bindings[0] = bindings[0]!.map(() => uuidv7());
      bindings[4] = bindings[4]!.map((c) => `${c}-explain-${e}`);
      await pg.query("BEGIN");
      const plan = await pg.query(`EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON) ${captured!.sql}`, bindings);
      await pg.query("ROLLBACK");
      lines = plan.rows.map((r) => r["QUERY PLAN"] as string);
      const ms = (label: string) => Number(/([\d.]+) ms/.exec(lines.find((l) => l.startsWith(label))!)![1]);
      planning.push(ms("Planning Time"));
      execution.push(ms("Execution Time"));
    }
    console.log(
      `write statement, ${BATCH} text messages, EXPLAIN ANALYZE x${EXPLAINS} (rolled back): ` +
        `planning median ${quantile(planning, 0.5).toFixed(3)} ms, execution median ${quantile(execution, 0.5).toFixed(3)} ms`,
    );
    for (const line of lines.filter((l) => /^Trigger/.test(l))) console.log(`  ${line.trim()}`);

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
