/**
 * What push notifications cost the write path: the one append statement timed with pushes
 * off, on for recipients without pushkeys (the EXISTS lookup only) and on for recipients
 * that all have one (an outbox row per message too); then the delivery receipts for that
 * batch (one grouped UPDATE; with pushes on it also deletes the outbox rows). Modes alternate round by round on one
 * fresh database, so drift (table growth, a noisy neighbour) hits all three alike.
 *
 *   node --import tsx bench/investigations/push-write.ts [--batch 64] [--batches 40] [--rounds 6]
 *
 * docs/push.md has the figures.
 */
import { Command } from "commander";
import { v7 as uuidv7 } from "uuid";
import { createDatabase, migrateToLatest } from "../../src/storage/database";
import { appendBatch } from "../../src/storage/append/appendBatch";
import { SqlMessageStore } from "../../src/storage/SqlMessageStore";
import type { AppendRequest } from "../../src/messaging/ports";
import { benchDatabase } from "../lib/ticks";
import { summarize } from "../lib/stats";

const opts = new Command()
  .option("--batch <n>", "messages per append statement", "64")
  .option("--batches <n>", "statements per mode and round", "40")
  .option("--rounds <n>", "rounds", "6")
  .parse(process.argv)
  .opts<{ batch: string; batches: string; rounds: string }>();
const BATCH = Number(opts.batch);
const BATCHES = Number(opts.batches);
const ROUNDS = Number(opts.rounds);
const DELAY = { pushDelayMs: 2000 };

type Mode = "off" | "on, no pushkeys" | "on, all pushkeys";

async function main(): Promise<void> {
  const tdb = await benchDatabase();
  const db = createDatabase({ kind: "postgres", url: tdb.url });
  try {
    await migrateToLatest(db, "postgres");
    // One sender→recipient pair per slot of a batch: a batch touches BATCH conversations.
    const pairs = (set: string) => Array.from({ length: BATCH }, (_, i) => ({ from: `s${set}${i}`, to: `r${set}${i}` }));
    const plain = pairs("a");
    const pushed = pairs("b");
    await db.raw(
      `INSERT INTO pushkeys (pushkey, user_id, app_id, registered_at) SELECT 'key-' || u, u, 'bench', now() FROM unnest(?::text[]) u`,
      [pushed.map((p) => p.to)],
    );
    const batchOf = (ps: { from: string; to: string }[]): AppendRequest[] => {
      const now = new Date();
      return ps.map((p) => ({
        kind: "text" as const,
        media: null,
        id: uuidv7(),
        from: p.from,
        clientMsgId: uuidv7(),
        target: { to: p.to },
        content: "x".repeat(100),
        createdAt: now,
        expiresAt: new Date(now.getTime() + 86_400_000),
      }));
    };
    const receiptsOff = new SqlMessageStore(db);
    const receiptsOn = new SqlMessageStore(db, DELAY);
    type Run = { append: () => Promise<{ id: string; to: string }[]>; store: SqlMessageStore };
    const appendOf =
      (ps: { from: string; to: string }[], options?: typeof DELAY) => async () => {
        const reqs = batchOf(ps);
        await appendBatch(db, reqs, options);
        return reqs.map((r, i) => ({ id: r.id, to: ps[i]!.to }));
      };
    const modes: Record<Mode, Run> = {
      off: { append: appendOf(plain), store: receiptsOff },
      "on, no pushkeys": { append: appendOf(plain, DELAY), store: receiptsOn },
      "on, all pushkeys": { append: appendOf(pushed, DELAY), store: receiptsOn },
    };
    const receipt = (run: Run, sent: { id: string; to: string }[]) => {
      const at = new Date();
      // Submitted in one tick: one grouped UPDATE, as many devices confirming at once.
      return Promise.all(sent.map((m) => run.store.markDelivered(m.to, [m.id], at)));
    };
    // Warm-up: creates the direct conversations, warms caches and plans.
    for (const run of Object.values(modes)) for (let i = 0; i < 5; i++) await receipt(run, await run.append());
    const times = new Map<Mode, number[]>(Object.keys(modes).map((m) => [m as Mode, []]));
    const receiptTimes = new Map<Mode, number[]>(Object.keys(modes).map((m) => [m as Mode, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [mode, run] of Object.entries(modes) as [Mode, Run][]) {
        for (let i = 0; i < BATCHES; i++) {
          const t0 = process.hrtime.bigint();
          const sent = await run.append();
          const t1 = process.hrtime.bigint();
          await receipt(run, sent);
          times.get(mode)!.push(Number(t1 - t0) / 1e6);
          receiptTimes.get(mode)!.push(Number(process.hrtime.bigint() - t1) / 1e6);
        }
        // A worker would empty the outbox within the delay; keep it as small as in real use.
        await db.raw("DELETE FROM push_outbox");
      }
    }
    for (const [what, table] of [
      ["append statement", times],
      ["delivery receipts", receiptTimes],
    ] as const) {
      console.log(`${what}, ${BATCH} messages each, ${ROUNDS} × ${BATCHES} statements per mode`);
      console.log("mode              | p50 ms | p99 ms | mean ms | µs per message");
      for (const [mode, t] of table) {
        const s = summarize([...t]);
        const mean = t.reduce((a, b) => a + b, 0) / t.length;
        console.log(
          `${mode.padEnd(17)} | ${s.p50!.toFixed(2).padStart(6)} | ${s.p99!.toFixed(2).padStart(6)} | ${mean.toFixed(2).padStart(7)} | ${((mean * 1000) / BATCH).toFixed(0).padStart(6)}`,
        );
      }
    }
  } finally {
    await db.destroy();
    await tdb.drop();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
