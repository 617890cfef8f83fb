/**
 * History: does the send path slow down as the database fills? Two Ticks servers side by
 * side, one on an empty database and one on a database seeded with an old history
 * (--history-messages, default 5 000 000, across --history-conversations conversations,
 * with their delivery rows, VACUUMed and ANALYZEd: bench/lib/seed.ts), run through the
 * main scenario's max and paced phases in alternating rounds. --history-template copies a
 * database seeded beforehand instead (bench/investigations/seed.ts: 20 M rows take a
 * quarter of an hour to seed, seconds to copy).
 *
 * --pg-diagnostics: both databases log statements over 100 ms with their plans
 * (log_min_duration_statement and auto_explain, set on these two databases only), the
 * whole server is sampled every 100 ms (bench/lib/pgTimeline.ts), and each side's worst
 * stalls are explained in the notes, the samples written beside the results; the paced
 * phase's WAL is split by database and relation, full-page images counted (bench/lib/walTally.ts).
 */
import { devAuth } from "../lib/load";
import { phaseOptionsOf, runInterleaved, type Contender, type PhaseOptions, type PhaseResult } from "../lib/phase";
import { seedHistory, type SeedResult } from "../lib/seed";
import type { Section } from "../lib/table";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { PgTimeline } from "../lib/pgTimeline";
import { WalTally, walNotes, type WalTallyResult } from "../lib/walTally";
import { BufferReadCounter, bufferReadNote } from "../lib/bufferReads";
import { ROOT } from "../lib/procs";
import { ADMIN_URL, migratedDatabase, startTicksOnFreshDb, storedCounts, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";
import { maxAndPacedRows, problemNotes } from "./main";

export async function runHistory(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const phase: PhaseOptions = phaseOptionsOf(o);
  let empty: TicksUnderTest | null = null;
  let full: TicksUnderTest | null = null;
  let seeded: SeedResult | null = null;
  let before = { messages: 0, delivered: 0 };
  let copied: { template: string; seconds: number } | null = null;
  let timeline: PgTimeline | null = null;
  try {
    const t0 = performance.now();
    full = await startTicksOnFreshDb(
      {},
      undefined,
      async (url) => {
        await migratedDatabase(url);
        if (o.historyTemplate) copied = { template: o.historyTemplate, seconds: (performance.now() - t0) / 1000 };
        else {
          ctx.log(`history: seeding ${o.historyMessages} messages across ${o.historyConversations} conversations`);
          seeded = await seedHistory(url, {
            messages: o.historyMessages,
            conversations: o.historyConversations,
            contentSize: o.contentSize,
            log: ctx.log,
          });
        }
        before = await storedCounts(url);
        if (o.pgDiagnostics) await logSlowStatements(url);
      },
      o.historyTemplate ?? undefined,
    );
    empty = await startTicksOnFreshDb({}, undefined, o.pgDiagnostics ? logSlowStatements : undefined);
    ctx.log(`history: empty on ${empty.db.name} (pid ${empty.target.pids[0]}), seeded on ${full.db.name} (pid ${full.target.pids[0]})`);
    const seed = seeded as SeedResult | null;
    const copy = copied as { template: string; seconds: number } | null;
    if (o.pgDiagnostics) timeline = await PgTimeline.start(ADMIN_URL);

    const sides = (suffix: string): Contender[] => [
      { target: { ...empty!.target, name: "empty" }, auth: devAuth, probe: empty!.probe, tag: `${ctx.runId}-he${suffix}`, batchMetrics: true },
      { target: { ...full!.target, name: "history" }, auth: devAuth, probe: full!.probe, tag: `${ctx.runId}-hf${suffix}`, batchMetrics: true },
    ];
    const [emptyMax, fullMax] = (await runInterleaved(sides("m"), { kind: "max" }, phase, ctx.log)) as [PhaseResult, PhaseResult];
    const rate =
      o.rate === "auto" ? Math.max(100, Math.floor(Math.min(emptyMax.ackedPerSec, fullMax.ackedPerSec) / 2 / 100) * 100) : o.rate;
    const wal = o.pgDiagnostics ? await WalTally.start(ADMIN_URL) : null;
    const reads = o.pgDiagnostics ? await Promise.all([empty, full].map((t) => BufferReadCounter.start(t.db.url))) : null;
    const [emptyPaced, fullPaced] = (await runInterleaved(sides("p"), { kind: "paced", rate }, phase, ctx.log)) as [
      PhaseResult,
      PhaseResult,
    ];
    const pacedWal: WalTallyResult | null = (await wal?.stop(ADMIN_URL, 40)) ?? null;
    const pacedReads = reads ? await Promise.all(reads.map((r) => r.stop())) : null;

    const serverLog = (await timeline?.stop()) ?? "";
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
        `history: the main phases on an empty database and on one holding ${before.messages.toLocaleString("en-US")} messages ` +
        `${copy ? `(a copy of ${copy.template})` : `(${o.historyConversations.toLocaleString("en-US")} conversations)`}, side by side`,
      columns: ["empty", "history", "history/empty"],
      rows: maxAndPacedRows(o.pairs * o.inFlight, rate, [emptyMax, fullMax], [emptyPaced, fullPaced]),
      notes: [
        seed
          ? `seeded ${seed.messages.toLocaleString("en-US")} messages, ${seed.deliveryRows.toLocaleString("en-US")} delivery rows, ` +
            `${seed.streamRows.toLocaleString("en-US")} status stream rows, ${seed.conversations.toLocaleString("en-US")} conversations ` +
            `(${seed.groups.toLocaleString("en-US")} groups), ${seed.users.toLocaleString("en-US")} users in ${seed.seconds.toFixed(0)} s ` +
            `(inserts ${seed.loadSeconds.toFixed(0)} s; then keys, indexes, VACUUM (FREEZE, ANALYZE), CHECKPOINT)`
          : copy
            ? `copied ${copy.template} (${before.messages.toLocaleString("en-US")} messages, ${before.delivered.toLocaleString("en-US")} receipts) and migrated it in ${copy.seconds.toFixed(0)} s`
            : "not seeded",
        `empty: ${await integrity(empty, emptyMax, emptyPaced, { messages: 0, delivered: 0 })}`,
        `history (beyond the seed): ${await integrity(full, fullMax, fullPaced, before)}`,
        `paced rate ${o.rate === "auto" ? "= half the lower of the two maxima, rounded down to 100" : "given with --rate"}`,
        ...problemNotes([emptyMax, fullMax, emptyPaced, fullPaced]),
        ...(pacedWal
          ? walNotes("paced", pacedWal, [
              { label: "empty", database: empty.db.name, messages: emptyPaced.totals.ackedOk },
              { label: "history", database: full.db.name, messages: fullPaced.totals.ackedOk },
            ])
          : []),
        ...(pacedReads
          ? [
              bufferReadNote("paced", "empty", pacedReads[0]!, emptyPaced.totals.ackedOk),
              bufferReadNote("paced", "history", pacedReads[1]!, fullPaced.totals.ackedOk),
            ]
          : []),
        ...(timeline ? diagnose(timeline, serverLog, [empty.db.name, full.db.name], { emptyMax, fullMax, emptyPaced, fullPaced }) : []),
      ],
    };
    ctx.shared.history = { emptyMax, fullMax, emptyPaced, fullPaced };
    return { sections: [section], data: { rate, seed, emptyMax, fullMax, emptyPaced, fullPaced } };
  } finally {
    await empty?.stop();
    await full?.stop();
  }
}

/** Statements over 100 ms, lock waits over deadlock_timeout, with their plans: on this database only. */
async function logSlowStatements(url: string): Promise<void> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    const name = new URL(url).pathname.slice(1);
    for (const setting of [
      "log_min_duration_statement = 100",
      "log_lock_waits = on",
      "session_preload_libraries = 'auto_explain'",
      "auto_explain.log_min_duration = 100",
    ])
      await c.query(`ALTER DATABASE ${name} SET ${setting}`);
  } finally {
    await c.end();
  }
}

/** Each phase's two worst stalls, explained by the samples and the log; the samples go to a file. */
function diagnose(timeline: PgTimeline, log: string, databases: string[], phases: Record<string, PhaseResult>): string[] {
  const file = path.join(ROOT, "bench/results", `${new Date().toISOString().replace(/[:.]/g, "-")}-history-timeline.json`);
  writeFileSync(file, JSON.stringify({ databases, samples: timeline.samples.filter((s) => s.busy.length > 0), log }, null, 1));
  const lines = [`PostgreSQL samples and log: ${path.relative(ROOT, file)}`];
  for (const [name, phase] of Object.entries(phases)) {
    for (const stall of phase.stalls.slice(0, 2)) lines.push(`${name}: ${timeline.explain(stall, databases, log).join("\n    ")}`);
  }
  return lines;
}
