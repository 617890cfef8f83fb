/**
 * History: does the send path slow down as the database fills? Two Ticks servers side by
 * side, one on an empty database and one on a database seeded with an old history
 * (--history-messages, default 5 000 000, across --history-conversations direct
 * conversations, with their delivery rows, VACUUMed and ANALYZEd: bench/lib/seed.ts), run
 * through the main scenario's max and paced phases in alternating rounds.
 */
import { devAuth } from "../lib/load";
import { phaseOptionsOf, runInterleaved, type Contender, type PhaseOptions, type PhaseResult } from "../lib/phase";
import { seedHistory, type SeedResult } from "../lib/seed";
import type { Section } from "../lib/table";
import { migratedDatabase, startTicksOnFreshDb, storedCounts, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";
import { maxAndPacedRows, problemNotes } from "./main";

export async function runHistory(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const phase: PhaseOptions = phaseOptionsOf(o);
  let empty: TicksUnderTest | null = null;
  let full: TicksUnderTest | null = null;
  let seeded: SeedResult | null = null;
  let before = { messages: 0, delivered: 0 };
  try {
    full = await startTicksOnFreshDb({}, undefined, async (url) => {
      await migratedDatabase(url);
      ctx.log(`history: seeding ${o.historyMessages} messages across ${o.historyConversations} conversations`);
      seeded = await seedHistory(url, {
        messages: o.historyMessages,
        conversations: o.historyConversations,
        contentSize: o.contentSize,
        log: ctx.log,
      });
      before = await storedCounts(url);
    });
    empty = await startTicksOnFreshDb();
    ctx.log(`history: empty on ${empty.db.name} (pid ${empty.target.pids[0]}), seeded on ${full.db.name} (pid ${full.target.pids[0]})`);
    const seed = seeded as SeedResult | null;

    const sides = (suffix: string): Contender[] => [
      { target: { ...empty!.target, name: "empty" }, auth: devAuth, probe: empty!.probe, tag: `${ctx.runId}-he${suffix}`, batchMetrics: true },
      { target: { ...full!.target, name: "history" }, auth: devAuth, probe: full!.probe, tag: `${ctx.runId}-hf${suffix}`, batchMetrics: true },
    ];
    const [emptyMax, fullMax] = (await runInterleaved(sides("m"), { kind: "max" }, phase, ctx.log)) as [PhaseResult, PhaseResult];
    const rate =
      o.rate === "auto" ? Math.max(100, Math.floor(Math.min(emptyMax.ackedPerSec, fullMax.ackedPerSec) / 2 / 100) * 100) : o.rate;
    const [emptyPaced, fullPaced] = (await runInterleaved(sides("p"), { kind: "paced", rate }, phase, ctx.log)) as [
      PhaseResult,
      PhaseResult,
    ];

    await new Promise((r) => setTimeout(r, 500));
    // Every acknowledged send stored, every "delivered" status with its receipt (beyond the seed's).
    const integrity = async (t: TicksUnderTest, max: PhaseResult, paced: PhaseResult, base: typeof before) => {
      const stored = await storedCounts(t.db.url);
      const messages = stored.messages - base.messages;
      const receipts = stored.delivered - base.delivered;
      const acked = max.totals.ackedOk + paced.totals.ackedOk;
      const statuses = max.totals.statusDelivered + paced.totals.statusDelivered;
      const ok = messages === acked && receipts >= statuses;
      return `${messages} messages stored for ${acked} acknowledged sends, ${receipts} receipts for ${statuses} statuses${ok ? "" : " (MISMATCH)"}`;
    };
    const section: Section = {
      title:
        `history: the main phases on an empty database and on one holding ${o.historyMessages.toLocaleString("en-US")} messages ` +
        `(${o.historyConversations.toLocaleString("en-US")} conversations), side by side`,
      columns: ["empty", "history", "history/empty"],
      rows: maxAndPacedRows(o.pairs * o.inFlight, rate, [emptyMax, fullMax], [emptyPaced, fullPaced]),
      notes: [
        seed
          ? `seeded ${seed.messages.toLocaleString("en-US")} messages + delivery rows, ${seed.conversations.toLocaleString("en-US")} conversations, ` +
            `${seed.users.toLocaleString("en-US")} users in ${seed.seconds.toFixed(0)} s (inserts ${seed.loadSeconds.toFixed(0)} s; then keys, indexes, VACUUM (FREEZE, ANALYZE), CHECKPOINT)`
          : "not seeded",
        `empty: ${await integrity(empty, emptyMax, emptyPaced, { messages: 0, delivered: 0 })}`,
        `history (beyond the seed): ${await integrity(full, fullMax, fullPaced, before)}`,
        `paced rate ${o.rate === "auto" ? "= half the lower of the two maxima, rounded down to 100" : "given with --rate"}`,
        ...problemNotes([emptyMax, fullMax, emptyPaced, fullPaced]),
      ],
    };
    ctx.shared.history = { emptyMax, fullMax, emptyPaced, fullPaced };
    return { sections: [section], data: { rate, seed, emptyMax, fullMax, emptyPaced, fullPaced } };
  } finally {
    await empty?.stop();
    await full?.stop();
  }
}
