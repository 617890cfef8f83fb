/**
 * Write lanes (APPEND_LANES): the relay and one Ticks server per lane count, side by side in
 * alternating rounds (bench/lib/phase.ts), at max load and then paced. Backs the choice of
 * the default in docs/benchmarks.md ("Write lanes").
 *
 *   npm run build && node --import tsx bench/investigations/lanes.ts --lanes 1,2,4,8 --duration 12 --rate 4000
 */
import { Command } from "commander";
import { devAuth } from "../lib/load";
import { runInterleaved, type Contender, type PhaseOptions, type PhaseResult } from "../lib/phase";
import { startRelayProcess, type Target } from "../lib/procs";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";

const o = new Command()
  .option("--lanes <list>", "lane counts to compare", "1,2,4")
  .option("--duration <s>", "measured seconds per target and phase", "12")
  .option("--rounds <n>", "alternating rounds", "3")
  .option("--rate <msg/s>", "paced rate (0: skip the paced phase)", "4000")
  .option("--pairs <n>", "sender→recipient pairs", "50")
  .option("--in-flight <n>", "sends in flight per sender", "8")
  .parse()
  .opts();

const lanes = String(o.lanes).split(",").map(Number);
const phase: PhaseOptions = {
  pairs: Number(o.pairs),
  inFlight: Number(o.inFlight),
  warmupMs: 3000,
  durationMs: Number(o.duration) * 1000,
  rounds: Number(o.rounds),
  drainMs: 10_000,
  contentSize: 100,
};
const log = (line: string) => console.error(`[lanes] ${line}`);

function print(title: string, names: string[], results: PhaseResult[], relay: PhaseResult): void {
  console.log(`\n${title}`);
  console.log(["", ...names].map((s) => s.padStart(11)).join(""));
  const line = (label: string, pick: (r: PhaseResult) => number | null, digits = 1) =>
    console.log(label.padEnd(11) + results.map((r) => (pick(r)?.toFixed(digits) ?? "-").padStart(11)).join(""));
  line("lifecyc/s", (r) => r.lifecyclesPerSec, 0);
  line("x relay", (r) => r.lifecyclesPerSec / relay.lifecyclesPerSec, 2);
  line("ack p50", (r) => r.ackMs.p50);
  line("ack p99", (r) => r.ackMs.p99);
  line("status p99", (r) => r.statusMs.p99);
  line("append/tx", (r) => r.meanBatch?.append ?? null);
  line("server %", (r) => r.serverCpuPct, 0);
  line("srv ms/msg", (r) => r.serverCpuMsPerMsg, 3);
  line("db ms/msg", (r) => r.dbCpuMsPerMsg, 3);
  line("incomplete", (r) => r.incomplete.status, 0);
  line("sends", (r) => r.sends, 0);
  line("errors", (r) => r.errors, 0);
}

async function main(): Promise<void> {
  let relay: Target | null = null;
  const servers: TicksUnderTest[] = [];
  try {
    relay = await startRelayProcess();
    for (const n of lanes) servers.push(await startTicksOnFreshDb({ APPEND_LANES: String(n) }));
    const sides = (suffix: string): Contender[] => [
      { target: relay!, auth: devAuth, tag: `lr${suffix}` },
      ...servers.map((s, i) => ({ target: s.target, auth: devAuth, probe: s.probe, tag: `l${lanes[i]}${suffix}`, batchMetrics: true })),
    ];
    const names = ["relay", ...lanes.map((n) => `lanes=${n}`)];
    const max = await runInterleaved(sides(`m${Date.now()}`), { kind: "max" }, phase, log);
    print(`max load (${phase.pairs * phase.inFlight} in flight)`, names, max, max[0]!);
    const rate = Number(o.rate);
    if (rate > 0) {
      const paced = await runInterleaved(sides(`p${Date.now()}`), { kind: "paced", rate }, phase, log);
      print(`paced at ${rate} msg/s`, names, paced, paced[0]!);
    }
  } finally {
    await relay?.stop();
    for (const s of servers) await s.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
