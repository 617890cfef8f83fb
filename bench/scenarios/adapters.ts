/**
 * Classic against sharded Redis adapter (REDIS_ADAPTER), side by side: for each, two Ticks
 * processes on one database and one Redis, senders on the first and their recipients on
 * the second, so every message, receipt and status crosses Redis. Closed loop (max load),
 * the two clusters interleaved round by round like every other comparison.
 * Not in the default run: `npm run bench -- --scenarios adapters`.
 */
import { devAuth } from "../lib/load";
import { phaseOptionsOf, runInterleaved, type Contender, type PhaseResult } from "../lib/phase";
import { startTicksProcess, type Target } from "../lib/procs";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";
import { comparisonRows, problemNotes } from "./main";

const ADAPTERS = ["classic", "sharded"] as const;
type Adapter = (typeof ADAPTERS)[number];

/** Two nodes as one target: load on the first, CPU counted over both. */
type TwoNodes = { target: Target; recipientUrl: string; first: TicksUnderTest; second: Target };

async function startTwoNodes(ctx: Context, adapter: Adapter): Promise<TwoNodes> {
  const env = { REDIS_URL: ctx.options.redisUrl, REDIS_ADAPTER: adapter, REDIS_PREFIX: `bench-${ctx.runId}-${adapter}` };
  const first = await startTicksOnFreshDb(env);
  let second: Target;
  try {
    second = await startTicksProcess({ AUTH_MODE: "dev", RATE_LIMIT_EVENTS_PER_SEC: "0", DATABASE_URL: first.db.url, ...env });
  } catch (err) {
    await first.stop();
    throw err;
  }
  const target: Target = {
    ...first.target,
    name: adapter,
    pids: [...first.target.pids, ...second.pids],
    gc: async () => void (await Promise.all([first.target.gc(), second.gc()])),
    stop: async () => {
      await second.stop();
      await first.stop();
    },
  };
  return { target, recipientUrl: second.url, first, second };
}

export async function runAdapters(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const phase = phaseOptionsOf(o);
  const clusters: TwoNodes[] = [];
  try {
    for (const adapter of ADAPTERS) clusters.push(await startTwoNodes(ctx, adapter));
    ctx.log(`adapters: ${clusters.map((c) => `${c.target.name} pids ${c.target.pids.join(",")}`).join("; ")}`);
    const contenders: Contender[] = clusters.map((c) => ({
      target: c.target,
      recipientUrl: c.recipientUrl,
      auth: devAuth,
      probe: c.first.probe,
      tag: `${ctx.runId}-a${c.target.name}`,
      batchMetrics: true,
    }));
    const [classic, sharded] = (await runInterleaved(contenders, { kind: "max" }, phase, ctx.log)) as [PhaseResult, PhaseResult];
    const section: Section = {
      title:
        `adapters: two nodes each, ${o.pairs} senders on one and their recipients on the other, ` +
        `${o.inFlight} sends in flight per sender, ${o.durationS} s measured per adapter in ${o.rounds} alternating rounds`,
      columns: ["classic", "sharded", "sharded/classic"],
      rows: [{ heading: `max load (closed loop, ${o.pairs * o.inFlight} sends in flight)` }, ...comparisonRows(classic, sharded, { paced: false })],
      notes: ["server CPU counts both nodes of a cluster", ...problemNotes([classic, sharded])],
    };
    return { sections: [section], data: { classic, sharded } };
  } finally {
    for (const c of clusters) await c.target.stop().catch((err) => ctx.log(`adapters: stop failed: ${err}`));
  }
}
