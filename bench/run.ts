/**
 * `npm run bench`: Ticks against a storage-less Socket.IO relay on the same machine, in the
 * same run, so every figure is also given as a ratio to the relay's (the machine is small,
 * shared and noisy: absolute numbers move between runs, ratios much less).
 *
 *   npm run bench                                  # everything (a few minutes)
 *   npm run bench -- --scenarios main --duration 5 # just the main comparison, quickly
 *   npm run bench -- --scenarios slow              # slow consumer vs MAX_SOCKET_BUFFER_BYTES
 *   npm run bench -- --scenarios soak              # 10 minutes of churn (--soak-minutes 1: short)
 *   npm run bench -- --c100k                       # 100,000 sockets on one process (= --scenarios c100k)
 *
 * Prints one table per scenario and writes bench/results/<timestamp>.json and latest.json
 * (git keeps latest.json and the runs docs/benchmarks.md cites; the rest is ignored).
 * docs/benchmarks.md explains the method.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Command, InvalidArgumentError, Option } from "commander";
import { ROOT } from "./lib/procs";
import { renderSection, type Section } from "./lib/table";
import { targetsSection } from "./lib/targets";
import type { BenchOptions, Context, ScenarioResult } from "./scenarios/context";
import { runMain } from "./scenarios/main";
import { runHistory } from "./scenarios/history";
import { runBacklog } from "./scenarios/backlog";
import { runIdle } from "./scenarios/idle";
import { runIdleTokens } from "./scenarios/idleTokens";
import { runPm2 } from "./scenarios/pm2";
import { runAdapters } from "./scenarios/adapters";
import { runRateLimit } from "./scenarios/rateLimit";
import { runSlow } from "./scenarios/slow";
import { runSoak } from "./scenarios/soak";
import { runGroup } from "./scenarios/group";
import { runGroupFlood } from "./scenarios/groupFlood";
import { runC100kScenario } from "./scenarios/c100k";

const SCENARIOS = {
  main: runMain,
  history: runHistory,
  backlog: runBacklog,
  idle: runIdle,
  "idle-tokens": runIdleTokens,
  pm2: runPm2,
  adapters: runAdapters,
  "rate-limit": runRateLimit,
  slow: runSlow,
  soak: runSoak,
  group: runGroup,
  "group-flood": runGroupFlood,
  c100k: runC100kScenario,
} satisfies Record<string, (ctx: Context) => Promise<ScenarioResult>>;
type ScenarioName = keyof typeof SCENARIOS;
/** What a run without --scenarios measures; the others (slow, soak: long) are asked for by name. */
const DEFAULT_SCENARIOS: ScenarioName[] = ["main", "history", "backlog", "idle", "pm2", "group"];

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};
const positiveInt = (name: string) => (value: string) => {
  const n = positive(name)(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return n;
};

function parseArgs(argv: string[]): { options: BenchOptions; scenarios: ScenarioName[]; out: string } {
  const program = new Command()
    .name("npm run bench --")
    .description("Ticks vs a storage-less Socket.IO relay, side by side; see docs/benchmarks.md")
    .option("-d, --duration <s>", "measured seconds per target and phase", positive("duration"), 15)
    .option("-w, --warmup <s>", "warm-up seconds before a target's first window (1 s before later ones)", positive("warmup"), 3)
    .option("--rounds <n>", "rounds each phase is split into, targets alternating", positiveInt("rounds"), 3)
    .option("-p, --pairs <n>", "sender→recipient pairs", positiveInt("pairs"), 50)
    .option("-f, --in-flight <n>", "sends in flight per sender", positiveInt("in-flight"), 8)
    .option("-r, --rate <msg/s|auto>", "rate of the paced phase; auto = half the lower measured maximum", "auto")
    .option("--content-size <chars>", "message content length", positiveInt("content-size"), 100)
    .option("--drain <s>", "longest wait for outstanding acks/receipts after a window", positive("drain"), 10)
    .option("--backlog <n>", "undelivered messages in the backlog-drain scenario", positiveInt("backlog"), 100_000)
    .option("--backlog-live-rate <msg/s>", "rate of the live pair during the drain", positive("backlog-live-rate"), 50)
    .option("--idle-sockets <n>", "idle sockets in the memory scenario", positiveInt("idle-sockets"), 10_000)
    .option("--idle-processes <n|auto>", "client processes holding the idle sockets", "auto")
    .option("--pm2-instances <list>", "PM2 worker counts to compare", "1,2")
    .option("--history-messages <n>", "messages seeded for the history scenario", positiveInt("history-messages"), 5_000_000)
    .option("--history-conversations <n>", "conversations they are spread over", positiveInt("history-conversations"), 50_000)
    .option("--redis-url <url>", "the Redis of the adapters scenario", "redis://127.0.0.1:6379")
    .option("--slow-messages <n>", "messages of 4 KB to the device that stops reading (slow)", positiveInt("slow-messages"), 50_000)
    .option("--slow-warmup <n>", "warm-up messages to a device that reads, before (slow)", positiveInt("slow-warmup"), 10_000)
    .option("--soak-minutes <min>", "length of the soak run", positive("soak-minutes"), 10)
    .option("--soak-peers <n>", "soak: each user sends to n fixed peers (a steady chat list); 0 = random users", (v) => (v === "0" ? 0 : positiveInt("soak-peers")(v)), 0)
    .option("--soak-prefill <n>", "soak with --soak-peers: messages each user sends each peer before the run (warm-up)", (v) => (v === "0" ? 0 : positiveInt("soak-prefill")(v)), 0)
    .option("--group-size <n>", "members of the group scenario's group, all connected", positiveInt("group-size"), 1024)
    .option("--group-in-flight <n>", "messages outstanding from the group scenario's sender", positiveInt("group-in-flight"), 4)
    .option("--c100k", "run the C100k scenario alone (same as --scenarios c100k)")
    .option("--c100k-sockets <n>", "concurrent sockets on one server process (c100k)", positiveInt("c100k-sockets"), 100_000)
    .option("--c100k-processes <n>", "client processes holding them (c100k)", positiveInt("c100k-processes"), 8)
    .option("--c100k-addresses <n>", "loopback source addresses 127.0.0.2… they connect from (c100k)", positiveInt("c100k-addresses"), 16)
    .option("--c100k-rate <msg/s>", "paced sends across the sockets (c100k)", positive("c100k-rate"), 1000)
    .option("--c100k-load-seconds <s>", "length of the paced load (c100k)", positive("c100k-load-seconds"), 30)
    .addOption(
      new Option("-s, --scenarios <list>", `comma-separated: ${Object.keys(SCENARIOS).join(",")}`).default(DEFAULT_SCENARIOS.join(",")),
    )
    .option("-o, --out <dir>", "where the JSON results go", path.join(ROOT, "bench/results"))
    .allowExcessArguments(false);
  program.parse(argv);
  const o = program.opts();
  const scenarios = String(o.c100k ? "c100k" : o.scenarios)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of scenarios) {
    if (!(s in SCENARIOS)) program.error(`unknown scenario "${s}" (known: ${Object.keys(SCENARIOS).join(", ")})`);
  }
  const rate = o.rate === "auto" ? "auto" : positive("rate")(String(o.rate));
  const idleProcesses = o.idleProcesses === "auto" ? "auto" : positiveInt("idle-processes")(String(o.idleProcesses));
  const pm2Instances = String(o.pm2Instances)
    .split(",")
    .map((n) => positiveInt("pm2-instances")(n.trim()));
  return {
    scenarios: scenarios as ScenarioName[],
    out: o.out as string,
    options: {
      durationS: o.duration,
      warmupS: o.warmup,
      rounds: o.rounds,
      pairs: o.pairs,
      inFlight: o.inFlight,
      rate,
      contentSize: o.contentSize,
      drainS: o.drain,
      backlog: o.backlog,
      backlogLiveRate: o.backlogLiveRate,
      idleSockets: o.idleSockets,
      idleProcesses,
      pm2Instances,
      historyMessages: o.historyMessages,
      historyConversations: o.historyConversations,
      redisUrl: o.redisUrl,
      slowMessages: o.slowMessages,
      slowWarmup: o.slowWarmup,
      soakMinutes: o.soakMinutes,
      soakPeers: o.soakPeers,
      soakPrefill: o.soakPrefill,
      groupSize: o.groupSize,
      groupInFlight: o.groupInFlight,
      c100kSockets: o.c100kSockets,
      c100kProcesses: o.c100kProcesses,
      c100kAddresses: Math.min(253, o.c100kAddresses),
      c100kRate: o.c100kRate,
      c100kLoadSeconds: o.c100kLoadSeconds,
    },
  };
}

function git(args: string[]): string | null {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const { options, scenarios, out } = parseArgs(process.argv);
  const started = new Date();
  const t0 = performance.now();
  const runId = randomBytes(3).toString("hex");
  const log = (line: string) => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  const ctx: Context = { options, runId, log, shared: {} };
  const environment = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverageAtStart: os.loadavg(),
    node: process.version,
    commit: git(["rev-parse", "--short", "HEAD"]),
    uncommittedSrcFiles: (git(["status", "--porcelain", "src"]) ?? "").split("\n").filter(Boolean).length,
  };
  console.log(
    `ticks bench ${started.toISOString()}: ${environment.cpus} CPUs (${environment.cpuModel}), node ${environment.node}, ` +
      `commit ${environment.commit}${environment.uncommittedSrcFiles ? ` + ${environment.uncommittedSrcFiles} uncommitted src files` : ""}, ` +
      `load average ${environment.loadAverageAtStart.map((l) => l.toFixed(2)).join(" ")}`,
  );

  const sections: Section[] = [];
  const results: Record<string, unknown> = {};
  let failed = false;
  for (const name of scenarios) {
    log(`scenario ${name}`);
    const s0 = performance.now();
    try {
      const result = await SCENARIOS[name](ctx);
      results[name] = { ...result.data, seconds: (performance.now() - s0) / 1000 };
      for (const section of result.sections) {
        sections.push(section);
        console.log(`\n${renderSection(section)}`);
      }
    } catch (err) {
      failed = true;
      log(`scenario ${name} failed: ${(err as Error).stack ?? String(err)}`);
      results[name] = { error: String((err as Error).message ?? err) };
      const section: Section = { title: `${name}: FAILED`, columns: [], rows: [], notes: [String((err as Error).message).split("\n")[0]!] };
      sections.push(section);
      console.log(`\n${renderSection(section)}`);
    }
  }
  const targets = targetsSection(ctx.shared);
  if (targets) {
    sections.push(targets);
    console.log(`\n${renderSection(targets)}`);
  }
  const totalS = (performance.now() - t0) / 1000;
  console.log(`\ntotal ${totalS.toFixed(0)} s`);

  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const report = {
    startedAt: started.toISOString(),
    totalSeconds: totalS,
    environment,
    options,
    scenarios: results,
    tables: sections.map(renderSection),
  };
  mkdirSync(out, { recursive: true });
  const json = JSON.stringify(report, null, 2);
  writeFileSync(path.join(out, `${stamp}.json`), json);
  writeFileSync(path.join(out, "latest.json"), json);
  log(`results: ${path.relative(process.cwd(), path.join(out, `${stamp}.json`))} (and latest.json)`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
