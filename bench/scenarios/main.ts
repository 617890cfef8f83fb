/**
 * The main comparison: the same load against the relay and against Ticks, in turn, first
 * at saturation (closed loop) and then paced at one rate both can sustain (open loop,
 * latency from the scheduled send time).
 */
import { devAuth } from "../lib/load";
import { phaseOptionsOf, runInterleaved, type Contender, type PhaseResult } from "../lib/phase";
import { startRelayProcess, type Target } from "../lib/procs";
import { ratio, sleep } from "../lib/stats";
import type { Row, Section } from "../lib/table";
import { startTicksOnFreshDb, storedCounts, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

/** Rows comparing two phase results; `lowerIsBetter` only affects the reading notes. */
/** The two phases' rows, max load then paced, as both main and history print them. */
export function maxAndPacedRows(
  inFlight: number,
  rate: number | string,
  max: [PhaseResult, PhaseResult],
  paced: [PhaseResult, PhaseResult],
): Row[] {
  return [
    { heading: `max load (closed loop, ${inFlight} sends in flight)` },
    ...comparisonRows(max[0], max[1], { paced: false }),
    { heading: `paced at ${rate} msg/s (open loop; latency from the scheduled send time)` },
    ...comparisonRows(paced[0], paced[1], { paced: true }),
  ];
}

export function comparisonRows(a: PhaseResult, b: PhaseResult, opts: { paced: boolean }): Row[] {
  const row = (label: string, pick: (r: PhaseResult) => number | null): Row => {
    const x = pick(a);
    const y = pick(b);
    return { label, cells: [x, y, ratio(y, x)] };
  };
  const from = opts.paced ? "from scheduled send" : "from send";
  const rows: Row[] = [
    row("acked msg/s", (r) => r.ackedPerSec),
    row("lifecycles/s (sender got status delivered)", (r) => r.lifecyclesPerSec),
    row(`ack p50 ms (${from})`, (r) => r.ackMs.p50),
    row("ack p99 ms", (r) => r.ackMs.p99),
    row("ack max ms", (r) => r.ackMs.max),
    row("delivery p50 ms (recipient's message:new)", (r) => r.deliveryMs.p50),
    row("delivery p99 ms", (r) => r.deliveryMs.p99),
    row("delivery max ms", (r) => r.deliveryMs.max),
    row("status p50 ms (sender's message:status)", (r) => r.statusMs.p50),
    row("status p99 ms", (r) => r.statusMs.p99),
    row("status max ms", (r) => r.statusMs.max),
    row("server CPU % of one core", (r) => r.serverCpuPct),
    row("server CPU ms per message", (r) => r.serverCpuMsPerMsg),
    { label: "db backends CPU ms per message", cells: [a.dbCpuMsPerMsg, b.dbCpuMsPerMsg, null] },
    ...batchRows(a, b),
    ...dbStateRows([a, b], [null]),
    {
      label: "lifecycles not completed (of sends in window)",
      cells: [`${a.incomplete.status}/${a.sends}`, `${b.incomplete.status}/${b.sends}`, null],
    },
    { label: "load generator CPU % of one core", cells: [a.loadgenCpuPct, b.loadgenCpuPct, null] },
  ];
  return rows;
}

/** One row per group-commit kind the server reports (ticks_write_batch_size), e.g. append, delivered. */
function batchRows(a: PhaseResult, b: PhaseResult): Row[] {
  const kinds = [...new Set([...Object.keys(a.meanBatch ?? {}), ...Object.keys(b.meanBatch ?? {})])].sort();
  return kinds.map((kind) => ({
    label: `${kind}: requests per db transaction (mean)`,
    cells: [a.meanBatch?.[kind] ?? null, b.meanBatch?.[kind] ?? null, null],
  }));
}

/** Mean database backends per state (sampled from pg_stat_activity every 100 ms). */
export function dbStateRows(results: PhaseResult[], trailing: null[] = []): Row[] {
  if (results.every((r) => r.dbStates === null)) return [];
  const row = (label: string, pick: (s: NonNullable<PhaseResult["dbStates"]>) => number): Row => ({
    label,
    cells: [...results.map((r) => (r.dbStates ? pick(r.dbStates) : null)), ...trailing],
  });
  return [
    row("db backends on CPU (mean count)", (s) => s.running),
    row("db backends waiting for a lock", (s) => s.lock),
    row("db backends waiting on WAL/IO (incl. LWLock)", (s) => s.walOrIo),
    row("db backends idle in transaction (waiting for Node)", (s) => s.idleInTransaction),
    row("db backends idle", (s) => s.idle),
  ];
}

export function problemNotes(results: PhaseResult[]): string[] {
  const notes: string[] = [];
  for (const r of results) {
    const bits: string[] = [];
    if (r.errors) bits.push(`${r.errors} error replies ${JSON.stringify(r.errorCodes)}`);
    if (r.disconnects) bits.push(`${r.disconnects} unexpected disconnects`);
    if (r.duplicateDeliveries) bits.push(`${r.duplicateDeliveries} duplicate deliveries`);
    if (bits.length) notes.push(`${r.target} (${r.mode}): ${bits.join(", ")}`);
  }
  return notes;
}

/** The lowest paced rate of the main scenario (`--rate auto`), in msg/s. */
const PACED_FLOOR = 2000;

export async function runMain(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const phase = phaseOptionsOf(o);
  let relay: Target | null = null;
  let ticks: TicksUnderTest | null = null;
  try {
    relay = await startRelayProcess();
    ticks = await startTicksOnFreshDb();
    ctx.log(`main: relay pid ${relay.pids[0]}, ticks pid ${ticks.target.pids[0]} on ${ticks.db.name}`);

    const sides = (suffix: string): Contender[] => [
      { target: relay!, auth: devAuth, tag: `${ctx.runId}-r${suffix}` },
      { target: ticks!.target, auth: devAuth, probe: ticks!.probe, tag: `${ctx.runId}-t${suffix}`, batchMetrics: true },
    ];
    const [relayMax, ticksMax] = (await runInterleaved(sides("m"), { kind: "max" }, phase, ctx.log)) as [PhaseResult, PhaseResult];
    ctx.shared.relayMaxMsgPerSec = relayMax.ackedPerSec;

    // The paced targets must hold at the higher of 2 000 msg/s and half Ticks' own maximum.
    const rate = o.rate === "auto" ? Math.max(PACED_FLOOR, Math.floor(ticksMax.ackedPerSec / 2 / 100) * 100) : o.rate;
    const [relayPaced, ticksPaced] = (await runInterleaved(sides("p"), { kind: "paced", rate }, phase, ctx.log)) as [
      PhaseResult,
      PhaseResult,
    ];

    // Integrity: every acknowledged send is stored, every "delivered" status has its receipt.
    await sleep(500);
    const stored = await storedCounts(ticks.db.url);
    const acked = ticksMax.totals.ackedOk + ticksPaced.totals.ackedOk;
    const statuses = ticksMax.totals.statusDelivered + ticksPaced.totals.statusDelivered;
    const integrity =
      `ticks database after the runs: ${stored.messages} messages stored for ${acked} acknowledged sends, ` +
      `${stored.delivered} delivery receipts stored for ${statuses} "delivered" statuses received` +
      (stored.messages === acked && stored.delivered >= statuses ? " (consistent)" : " (MISMATCH)");

    const section: Section = {
      title:
        `main: ${o.pairs} sender→recipient pairs, ${o.inFlight} sends in flight per sender, ` +
        `${o.durationS} s measured per target and phase, in ${o.rounds} alternating rounds`,
      columns: ["relay", "ticks", "ticks/relay"],
      rows: maxAndPacedRows(o.pairs * o.inFlight, rate, [relayMax, ticksMax], [relayPaced, ticksPaced]),
      notes: [
        "ratio > 1 on a latency or CPU row, < 1 on a throughput row: Ticks costs that much more than a bare relay",
        `paced rate ${o.rate === "auto" ? `= the higher of ${PACED_FLOOR} and half Ticks' maximum, rounded down to 100` : "given with --rate"}`,
        integrity,
        ...problemNotes([relayMax, ticksMax, relayPaced, ticksPaced]),
      ],
    };
    ctx.shared.main = { relayMax, ticksMax, relayPaced, ticksPaced };
    return { sections: [section], data: { rate, relayMax, ticksMax, relayPaced, ticksPaced, stored } };
  } finally {
    await relay?.stop();
    await ticks?.stop();
  }
}
