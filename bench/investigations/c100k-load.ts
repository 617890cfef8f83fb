/**
 * Issue 23: where the C100k scenario's ack latency goes (docs/benchmarks.md, "C100k, run at
 * 19 000 sockets"). One Ticks server on a fresh database, `--sockets` held by the C100k
 * client processes (bench/c100k-clients.ts), then paced loads in turn on the same sockets
 * (`--phases`):
 *
 *   random       random sender → random user (the scenario's load: nearly every send is a
 *                first contact, its conversation created as it is stored)
 *   fixed-warm   `--senders` sockets per process, each to one fixed partner: creates those
 *                conversations (not reported as a result, printed anyway)
 *   fixed        the same pairs again: every conversation exists
 *
 * Each phase prints ack p50/p99, the server's event-loop lag, and the CPU seconds of the
 * server, of the client processes and of PostgreSQL (every `postgres` process) over it;
 * `--profile <dir>` writes a CPU profile of the server per phase (inspector, started and
 * stopped over IPC by cpu-prof-preload.cjs); `--log-min-ms <ms>` sets
 * log_min_duration_statement on the run's database only (PostgreSQL's log).
 *
 *   npm run build && flock -x /work/bench.lock node --import tsx bench/investigations/c100k-load.ts \
 *     --sockets 19000 --phases random,fixed-warm,fixed,random
 */
import { Command } from "commander";
import path from "node:path";
import { readdirSync, readFileSync } from "node:fs";
import type { ChildProcess } from "node:child_process";
import { Client } from "pg";
import { waitMessage } from "../lib/idleSockets";
import { cpuMs, ROOT, scrapeMetrics, spawnChild, type Target, closeClients } from "../lib/procs";
import { sleep, summarize } from "../lib/stats";
import { startTicksOnFreshDb } from "../lib/ticks";

const o = new Command()
  .option("--sockets <n>", "sockets on the server", "19000")
  .option("--processes <n>", "client processes", "8")
  .option("--addresses <n>", "loopback source addresses", "16")
  .option("--rate <msg/s>", "paced sends, all processes together", "1000")
  .option("--seconds <s>", "length of each phase", "30")
  .option("--senders <n>", "sending sockets per process in the fixed phases", "64")
  .option("--phases <list>", "random | fixed-warm | fixed, in order", "random,fixed-warm,fixed")
  .option("--env <list>", "extra server environment, NAME=value,…", "")
  .option("--profile <dir>", "a CPU profile of the server per phase, written there")
  .option("--log-min-ms <ms>", "log_min_duration_statement on this run's database")
  .option("--lag-every <ms>", "scrape /metrics for the loop lag this often (0: never; each scrape costs the server a listing of its handles and fds)", "1000")
  .option("--pg-sample", "sample pg_stat_activity every 100 ms: what the run's backends are doing")
  .parse()
  .opts();

const CLIENT_TS = path.join(ROOT, "bench/c100k-clients.ts");
const PRELOAD = path.join(ROOT, "bench/investigations/cpu-prof-preload.cjs");
const log = (line: string) => console.error(`[c100k-load] ${line}`);
const sockets = Number(o.sockets);
const processes = Number(o.processes);
const addresses = Array.from({ length: Number(o.addresses) }, (_, i) => `127.0.0.${i + 2}`);
const env: Record<string, string> = {
  // As the scenario runs Ticks (bench/scenarios/c100k.ts).
  RATE_LIMIT_EVENTS_PER_SEC: "100",
  RATE_LIMIT_BURST: "500",
  MAX_SOCKET_BUFFER_BYTES: String(1024 * 1024),
  NODE_OPTIONS: `--require ${PRELOAD}`,
};
for (const pair of String(o.env).split(",").filter(Boolean)) {
  const [k, ...v] = pair.split("=");
  env[k!] = v.join("=");
}

/** CPU ms of every process named postgres (the bench lock keeps others' work off it). */
function postgresCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres") total += cpuMs(Number(pid)) ?? 0;
    } catch {
      // gone
    }
  }
  return total;
}

function lagSampler(target: Target, everyMs: number): () => Promise<{ p99: number | null; max: number | null; scrapeMs: number | null }> {
  const p99s: number[] = [];
  const scrapes: number[] = [];
  let max = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped && everyMs > 0) {
      try {
        // How long GET /metrics takes: the collectors run on the server's loop, which waits meanwhile.
        const t0 = performance.now();
        const m = await scrapeMetrics(target.url);
        scrapes.push(performance.now() - t0);
        p99s.push((m.get("nodejs_eventloop_lag_p99_seconds") ?? NaN) * 1000);
        max = Math.max(max, (m.get("nodejs_eventloop_lag_max_seconds") ?? 0) * 1000);
      } catch {
        // a missed sample
      }
      await sleep(everyMs);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return { p99: p99s.length ? p99s.reduce((a, b) => a + b, 0) / p99s.length : null, max: everyMs > 0 ? max : null, scrapeMs: scrapes.length ? scrapes.reduce((a, b) => a + b, 0) / scrapes.length : null };
  };
}

/** The server's own view of message:send (receive → ack) and of its write batches, from /metrics. */
type Counters = { sendCount: number; sendSum: number; buckets: Map<number, number>; batchCount: number; batchSum: number };
async function counters(target: Target): Promise<Counters> {
  const m = await scrapeMetrics(target.url);
  const buckets = new Map<number, number>();
  let sendCount = 0;
  let sendSum = 0;
  let batchCount = 0;
  let batchSum = 0;
  for (const [k, v] of m) {
    if (!k.includes("{")) continue;
    if (k.startsWith("ticks_handler_duration_seconds") && k.includes('event="message:send"') && k.includes('outcome="ok"')) {
      const le = /le="([^"]+)"/.exec(k);
      if (k.startsWith("ticks_handler_duration_seconds_bucket") && le) buckets.set(Number(le[1]), v);
      else if (k.startsWith("ticks_handler_duration_seconds_sum")) sendSum = v;
      else if (k.startsWith("ticks_handler_duration_seconds_count")) sendCount = v;
    }
    if (k.startsWith("ticks_write_batch_size_sum") && k.includes('kind="append"')) batchSum = v;
    if (k.startsWith("ticks_write_batch_size_count") && k.includes('kind="append"')) batchCount = v;
  }
  return { sendCount, sendSum, buckets, batchCount, batchSum };
}

/** Mean and the bucket bound under which half the sends were acknowledged, between two scrapes. */
function serverView(a: Counters, b: Counters): { meanMs: number | null; p50UpToMs: number | null; batch: number | null } {
  const n = b.sendCount - a.sendCount;
  let p50: number | null = null;
  for (const le of [...b.buckets.keys()].sort((x, y) => x - y)) {
    if ((b.buckets.get(le)! - (a.buckets.get(le) ?? 0)) >= n / 2) {
      p50 = le * 1000;
      break;
    }
  }
  const batches = b.batchCount - a.batchCount;
  return { meanMs: n > 0 ? ((b.sendSum - a.sendSum) / n) * 1000 : null, p50UpToMs: p50, batch: batches > 0 ? (b.batchSum - a.batchSum) / batches : null };
}

/** utime and stime of a process, ms. */
function userSys(pid: number): { user: number; sys: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { user: (Number(fields[11]) * 1000) / 100, sys: (Number(fields[12]) * 1000) / 100 };
}

/**
 * pg_stat_activity of the run's database every 100 ms until stopped: per (state, wait event,
 * statement), how many backend-samples, i.e. where the backends' time goes.
 */
function pgSampler(url: string, dbName: string): () => Promise<[string, number][]> {
  const counts = new Map<string, number>();
  let stopped = false;
  const client = new Client({ connectionString: url });
  const loop = (async () => {
    await client.connect();
    while (!stopped) {
      const { rows } = await client.query<{ s: string }>(
        `SELECT coalesce(state, '?') || ' | ' || coalesce(wait_event_type || ':' || wait_event, 'cpu') || ' | ' ||
           left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS s
         FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle'`,
        [dbName],
      );
      for (const r of rows) counts.set(r.s, (counts.get(r.s) ?? 0) + 1);
      await sleep(100);
    }
    await client.end();
  })();
  return async () => {
    stopped = true;
    await loop;
    return [...counts].sort((a, b) => b[1] - a[1]);
  };
}

let profSeq = 0;
function profile(child: ChildProcess, command: "prof-start" | "prof-stop", file?: string): Promise<void> {
  const id = ++profSeq;
  return new Promise((resolve) => {
    const onMessage = (m: { bench?: string; id?: number }) => {
      if (m?.bench !== `${command}-done` || m.id !== id) return;
      child.off("message", onMessage);
      resolve();
    };
    child.on("message", onMessage);
    child.send({ bench: command, id, file });
  });
}

async function main(): Promise<void> {
  const logMin = o.logMinMs;
  const ticks = await startTicksOnFreshDb(env, sockets + 8192, async (url) => {
    if (logMin === undefined) return;
    const name = new URL(url).pathname.slice(1);
    const admin = new Client({ connectionString: url });
    await admin.connect();
    await admin.query(`ALTER DATABASE "${name}" SET log_min_duration_statement = ${Number(logMin)}`);
    await admin.end();
  });
  const server = ticks.target.pids[0]!;
  const serverChild = ticks.target.child;
  const children: ChildProcess[] = [];
  try {
    const share = Math.ceil(sockets / processes);
    for (let p = 0; p < processes; p++) {
      const count = Math.min(share, sockets - p * share);
      const own = addresses.filter((_, i) => i % processes === p);
      const child = spawnChild(
        ["--max-old-space-size=1536", "--import", "tsx", CLIENT_TS],
        {
          C100K_URL: ticks.target.url,
          C100K_COUNT: String(count),
          C100K_OFFSET: String(p * share),
          C100K_TOTAL: String(sockets),
          C100K_BATCH: "100",
          C100K_TAG: "x",
          C100K_ADDRESSES: (own.length ? own : [addresses[p % addresses.length]!]).join(","),
        },
        count + 1024,
      );
      child.stdout?.resume();
      child.stderr?.on("data", (d: Buffer) => log(`client: ${d.toString().trim()}`));
      children.push(child);
    }
    await Promise.all(children.map((c) => waitMessage(c, "c100k-ready", 120_000)));
    const connecting = Promise.all(children.map((c) => waitMessage<{ opened: number; seconds: number }>(c, "c100k-connected", 1_800_000)));
    for (const c of children) c.send({ bench: "connect" });
    const connected = await connecting;
    log(`${connected.reduce((s, r) => s + r.opened, 0)} sockets synced in ${Math.max(...connected.map((r) => r.seconds)).toFixed(1)} s`);
    await sleep(3000);

    const rows: string[] = [];
    for (const [n, phase] of String(o.phases).split(",").entries()) {
      const partner = phase === "random" ? "random" : "fixed";
      const senders = phase === "random" ? 0 : Number(o.senders);
      const loadavg = readFileSync("/proc/loadavg", "utf8").split(" ")[0];
      if (o.profile && serverChild) await profile(serverChild, "prof-start");
      const cpu0 = { server: cpuMs(server) ?? 0, clients: children.reduce((s, c) => s + (cpuMs(c.pid!) ?? 0), 0), pg: postgresCpuMs() };
      const us0 = userSys(server);
      const c0 = await counters(ticks.target);
      const stopLag = lagSampler(ticks.target, Number(o.lagEvery));
      const stopPg = o.pgSample ? pgSampler(ticks.db.url, new URL(ticks.db.url).pathname.slice(1)) : null;
      const t0 = performance.now();
      type Loaded = { sent: number; acked: number; errors: number; ackMs: number[] };
      const loading = Promise.all(children.map((c) => waitMessage<Loaded>(c, "c100k-loaded", Number(o.seconds) * 1000 + 120_000)));
      for (const c of children) c.send({ bench: "load", rate: Number(o.rate) / children.length, ms: Number(o.seconds) * 1000, senders, partner });
      const loaded = await loading;
      const wall = (performance.now() - t0) / 1000;
      const lag = await stopLag();
      const pgSamples = (await stopPg?.()) ?? [];
      const view = serverView(c0, await counters(ticks.target));
      const us1 = userSys(server);
      const cpu1 = { server: cpuMs(server) ?? 0, clients: children.reduce((s, c) => s + (cpuMs(c.pid!) ?? 0), 0), pg: postgresCpuMs() };
      if (o.profile && serverChild) await profile(serverChild, "prof-stop", path.join(o.profile, `${n}-${phase}.cpuprofile`));
      const acks = summarize(loaded.flatMap((l) => l.ackMs));
      const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? "-" : x.toFixed(d));
      const row = [
        phase.padEnd(11),
        String(loaded.reduce((s, l) => s + l.acked, 0)).padStart(7),
        String(loaded.reduce((s, l) => s + l.errors, 0)).padStart(5),
        f(acks.p50, 2).padStart(8),
        f(acks.p99).padStart(8),
        f(lag.p99).padStart(8),
        f(lag.max).padStart(8),
        f((cpu1.server - cpu0.server) / 1000 / wall, 2).padStart(7),
        f((cpu1.clients - cpu0.clients) / 1000 / wall, 2).padStart(8),
        f((cpu1.pg - cpu0.pg) / 1000 / wall, 2).padStart(6),
        String(loadavg).padStart(6),
        f(view.meanMs).padStart(8),
        ("≤" + f(view.p50UpToMs, 0)).padStart(7),
        f(view.batch).padStart(6),
        f((us1.sys - us0.sys) / (us1.user - us0.user + us1.sys - us0.sys), 2).padStart(5),
        f(lag.scrapeMs).padStart(7),
      ].join(" ");
      log(row);
      rows.push(row);
      if (pgSamples.length > 0) {
        const total = pgSamples.reduce((a, [, n]) => a + n, 0);
        console.log(`\n${phase}: active backends per 100 ms sample, mean ${((total / (wall * 10)) || 0).toFixed(2)}; by state | wait | statement:`);
        for (const [k, n] of pgSamples.slice(0, 12)) console.log(`  ${String(n).padStart(6)}  ${k}`);
      }
      await sleep(3000);
    }
    console.log(`\n${sockets} sockets, ${o.rate} msg/s for ${o.seconds} s per phase, fixed phases: ${o.senders} senders per process`);
    console.log("phase         acked  errs  p50 ms  p99 ms lag p99 lag max  server  clients     pg  load1 srv mean srv p50  batch  sys scrape");
    console.log("                                                            (cores over the phase)      (receive→ack, ms)       share  ms avg");
    for (const r of rows) console.log(r);
  } finally {
    await closeClients(children, 30_000);
    await ticks.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
