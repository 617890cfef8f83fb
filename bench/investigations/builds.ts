/**
 * Two (or more) builds of the server side by side: the relay and one Ticks server per
 * compiled tree, each on a fresh database, in alternating rounds (bench/lib/phase.ts), at
 * max load and then paced. For a change to the hot path, measured against the code before
 * it in the same run (on this shared machine, runs minutes apart differ more than most
 * changes do). Backs "Server and database CPU per message" in docs/benchmarks.md.
 *
 *   git stash && npm run build && cp -r dist dist-before && git stash pop && npm run build
 *   node --import tsx bench/investigations/builds.ts --builds dist-before,dist --duration 10
 */
import path from "node:path";
import { Command } from "commander";
import { devAuth } from "../lib/load";
import { DbProbe, runInterleaved, type Contender, type PhaseOptions, type PhaseResult } from "../lib/phase";
import { ROOT, startRelayProcess, startTicksProcess, type Target } from "../lib/procs";
import { ADMIN_URL, benchDatabase, BENCH_ENV } from "../lib/ticks";
import type { TestDatabase } from "../../test/helpers/database";
import { STALL_MS } from "../lib/stats";

const o = new Command()
  .option("--builds <list>", "compiled trees (relative to the repository), each with src/main.js; `dist@NODE_OPTIONS=--max-semi-space-size=64` adds environment to one", "dist")
  .option("--duration <s>", "measured seconds per target and phase", "10")
  .option("--rounds <n>", "alternating rounds", "3")
  .option("--rate <msg/s>", "paced rate (0: skip the paced phase)", "2000")
  .option("--pairs <n>", "sender→recipient pairs", "50")
  .option("--in-flight <n>", "sends in flight per sender", "8")
  .parse()
  .opts();

const builds = String(o.builds).split(",");
const phase: PhaseOptions = {
  pairs: Number(o.pairs),
  inFlight: Number(o.inFlight),
  warmupMs: 3000,
  durationMs: Number(o.duration) * 1000,
  rounds: Number(o.rounds),
  drainMs: 10_000,
  contentSize: 100,
};
const log = (line: string) => console.error(`[builds] ${line}`);

type Server = { target: Target; db: TestDatabase; probe: DbProbe };

function print(title: string, names: string[], results: PhaseResult[], relay: PhaseResult): void {
  console.log(`\n${title}`);
  console.log(["", ...names].map((s) => s.padStart(13)).join(""));
  const line = (label: string, pick: (r: PhaseResult) => number | null, digits = 1) =>
    console.log(label.padEnd(13) + results.map((r) => (pick(r)?.toFixed(digits) ?? "-").padStart(13)).join(""));
  line("lifecyc/s", (r) => r.lifecyclesPerSec, 0);
  line("x relay", (r) => r.lifecyclesPerSec / relay.lifecyclesPerSec, 3);
  line("ack p50", (r) => r.ackMs.p50);
  line("ack p99", (r) => r.ackMs.p99);
  line("status p99", (r) => r.statusMs.p99);
  line("append/tx", (r) => r.meanBatch?.append ?? null);
  line("server %", (r) => r.serverCpuPct, 0);
  line("srv ms/msg", (r) => r.serverCpuMsPerMsg, 4);
  line("db ms/msg", (r) => r.dbCpuMsPerMsg, 4);
  line("incomplete", (r) => r.incomplete.status, 0);
  line("sends", (r) => r.sends, 0);
  line("errors", (r) => r.errors, 0);
  for (const [i, r] of results.entries()) {
    for (const s of r.stalls.slice(0, Number(process.env.BENCH_STALLS_SHOWN ?? 5))) console.log(`  ${names[i]}: acks ≥ ${STALL_MS} ms ${s.from} → ${s.to}, ${s.sends} sends, worst ${s.worstAckMs} ms`);
  }
}

async function main(): Promise<void> {
  let relay: Target | null = null;
  const servers: Server[] = [];
  try {
    relay = await startRelayProcess();
    for (const build of builds) {
      const [dir, ...vars] = build.split("@");
      const extra = Object.fromEntries(vars.map((v) => [v.slice(0, v.indexOf("=")), v.slice(v.indexOf("=") + 1)]));
      const db = await benchDatabase();
      const target = await startTicksProcess({ ...BENCH_ENV, DATABASE_URL: db.url, ...extra }, undefined, undefined, path.join(ROOT, dir!, "src/main.js"));
      servers.push({ target, db, probe: await DbProbe.open(ADMIN_URL, db.name) });
    }
    const sides = (suffix: string): Contender[] => [
      { target: relay!, auth: devAuth, tag: `br${suffix}` },
      ...servers.map((s, i) => ({ target: s.target, auth: devAuth, probe: s.probe, tag: `b${i}${suffix}`, batchMetrics: true })),
    ];
    const names = ["relay", ...builds];
    const max = await runInterleaved(sides(`m${Date.now()}`), { kind: "max" }, phase, log);
    print(`max load (${phase.pairs * phase.inFlight} in flight)`, names, max, max[0]!);
    const rate = Number(o.rate);
    if (rate > 0) {
      const paced = await runInterleaved(sides(`p${Date.now()}`), { kind: "paced", rate }, phase, log);
      print(`paced at ${rate} msg/s`, names, paced, paced[0]!);
    }
  } finally {
    await relay?.stop();
    for (const s of servers) {
      await s.target.stop();
      await s.probe.close().catch(() => {});
      await s.db.drop();
    }
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
