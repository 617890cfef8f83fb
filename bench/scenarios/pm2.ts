/**
 * PM2 cluster mode: the project's pm2.config.js with INSTANCES=1, then 2 (or --pm2-instances),
 * as in production (NODE_ENV=production, JWT auth, Redis adapter), each under a private
 * PM2_HOME so no other PM2 on the machine is touched, `pm2 kill` of that home at the end.
 * Both clusters run at once, next to two plain Ticks processes (no PM2; one without Redis,
 * one with; same auth), and all four are measured in alternating rounds with the same saturating load as the
 * main scenario (HS256 tokens minted here).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import type { AuthFor } from "../lib/load";
import { DbProbe, phaseOptionsOf, runInterleaved, type PhaseResult } from "../lib/phase";
import { atExit, freePort, ROOT, waitHttpOk, type Target } from "../lib/procs";
import { ratio } from "../lib/stats";
import type { Row, Section } from "../lib/table";
import { ADMIN_URL, benchDatabase, startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import { dbStateRows, problemNotes } from "./main";
import type { Context, ScenarioResult } from "./context";

const PM2 = path.join(ROOT, "node_modules/.bin/pm2");
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

function pm2(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PM2, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pm2 ${args.join(" ")} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

type Pm2Process = { pid: number; pm2_env: { status: string; restart_time: number } };

async function workers(env: Record<string, string>): Promise<Pm2Process[]> {
  const out = await pm2(["jlist"], env);
  const start = out.indexOf("[");
  return start < 0 ? [] : (JSON.parse(out.slice(start)) as Pm2Process[]);
}

function logsOf(home: string): string {
  try {
    const dir = path.join(home, "logs");
    return readdirSync(dir)
      .map((f) => `--- ${f}\n${readFileSync(path.join(dir, f), "utf8").split("\n").slice(-20).join("\n")}`)
      .join("\n");
  } catch {
    return "(no pm2 logs)";
  }
}

function jwtAuth(secret: string): AuthFor {
  const key = new TextEncoder().encode(secret);
  return async (userId) => ({
    token: await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(userId).setIssuedAt().setExpirationTime("1h").sign(key),
    deviceId: "bench",
  });
}

type Cluster = { target: Target; probe: DbProbe; stop(): Promise<void> };

/** pm2.config.js under its own PM2_HOME, port, database and Redis prefix. */
async function startCluster(instances: number, ctx: Context, secret: string): Promise<Cluster> {
  const db = await benchDatabase();
  const home = mkdtempSync(path.join(os.tmpdir(), "ticks-bench-pm2-"));
  const port = await freePort();
  const env: Record<string, string> = {
    PM2_HOME: home,
    INSTANCES: String(instances),
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_PREFIX: `bench-${ctx.runId}-${instances}`,
    NODE_ENV: "production",
    AUTH_MODE: "jwt",
    JWT_SECRET: secret,
    LOG_LEVEL: "warn",
    RATE_LIMIT_EVENTS_PER_SEC: "0",
  };
  let probe: DbProbe | null = null;
  // If the harness dies first: kill this PM2 home's daemon and its workers.
  // Once known, the daemon's and workers' pids: killed directly (a graceful `pm2 kill` waits
  // for the workers to drain sockets this exiting harness still holds).
  let known: number[] = [];
  const forget = atExit(() => {
    try {
      if (known.length === 0) {
        execFileSync(PM2, ["kill"], { cwd: ROOT, env: { ...process.env, ...env }, stdio: "ignore", timeout: 60_000 });
      }
      for (const pid of known) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
  const stop = async () => {
    forget();
    await probe?.close().catch(() => {});
    try {
      const list = await workers(env);
      const restarts = list.reduce((s, w) => s + w.pm2_env.restart_time, 0);
      if (restarts > 0) ctx.log(`pm2 x${instances}: ${restarts} worker restarts!\n${logsOf(home)}`);
    } catch {
      // the daemon is gone already
    }
    await pm2(["kill"], env, 60_000).catch((err: Error) => ctx.log(`pm2 kill: ${err.message}`));
    rmSync(home, { recursive: true, force: true });
    await db.drop();
  };
  try {
    await pm2(["start", "pm2.config.js"], env, 120_000);
    const url = `http://127.0.0.1:${port}`;
    await waitHttpOk(`${url}/readyz`, 60_000);
    // Every worker online (wait_ready: online means it sent "ready").
    const deadline = Date.now() + 60_000;
    let list = await workers(env);
    while (list.filter((w) => w.pm2_env.status === "online" && w.pid > 0).length < instances) {
      if (Date.now() > deadline) throw new Error(`pm2: ${instances} workers not online:\n${logsOf(home)}`);
      await new Promise((r) => setTimeout(r, 300));
      list = await workers(env);
    }
    const pids = list.map((w) => w.pid);
    const daemon = Number(readFileSync(path.join(home, "pm2.pid"), "utf8").trim());
    known = Number.isInteger(daemon) && daemon > 0 ? [...pids, daemon] : pids;
    ctx.log(`pm2 x${instances}: workers ${pids.join(", ")} on port ${port}`);
    probe = await DbProbe.open(ADMIN_URL, db.name);
    const target: Target = { name: `pm2 x${instances}`, url, port, pids, output: [], gc: async () => {}, stop: async () => {} };
    return { target, probe, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export async function runPm2(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const secret = randomBytes(32).toString("hex");
  const phase = phaseOptionsOf(o);
  const auth = jwtAuth(secret);
  const clusters: Cluster[] = [];
  const singles: TicksUnderTest[] = [];
  let results: PhaseResult[];
  try {
    // References: one Ticks process without PM2, without and then with Redis (same auth and
    // NODE_ENV), so the table splits what Redis costs from what PM2 costs.
    const production = { AUTH_MODE: "jwt", JWT_SECRET: secret, NODE_ENV: "production" };
    singles.push(await startTicksOnFreshDb(production));
    singles[0]!.target.name = "single node";
    singles.push(await startTicksOnFreshDb({ ...production, REDIS_URL, REDIS_PREFIX: `bench-${ctx.runId}-single` }));
    singles[1]!.target.name = "single node + Redis";
    for (const n of o.pm2Instances) clusters.push(await startCluster(n, ctx, secret));
    results = await runInterleaved(
      [
        ...singles.map((t, i) => ({ target: t.target, auth, probe: t.probe, tag: `${ctx.runId}-sn${i}` })),
        ...clusters.map((c, i) => ({ target: c.target, auth, probe: c.probe, tag: `${ctx.runId}-pm${o.pm2Instances[i]}` })),
      ],
      { kind: "max" },
      phase,
      ctx.log,
    );
  } finally {
    for (const c of clusters) await c.stop();
    for (const t of singles) await t.stop();
  }

  const single = results[0]!;
  const first = results[2]!;
  const last = results[results.length - 1]!;
  const row = (label: string, pick: (r: PhaseResult) => number | null): Row => ({
    label,
    cells: [...results.map(pick), ratio(pick(last), pick(first))],
  });
  const relay = ctx.shared.relayMaxMsgPerSec ?? null;
  const section: Section = {
    title:
      `PM2 cluster mode: ${o.pm2Instances.join(" vs ")} workers (Redis adapter), and one node without PM2 (without, with Redis); ` +
      `JWT auth, NODE_ENV=production, max load (${o.pairs * o.inFlight} in flight)`,
    columns: [
      "1 node",
      "1 node + Redis",
      ...o.pm2Instances.map((n) => `pm2 ${n} worker${n > 1 ? "s" : ""}`),
      `${last.target}/${first.target}`.replace(/pm2 /g, ""),
    ],
    rows: [
      row("acked msg/s", (r) => r.ackedPerSec),
      row("lifecycles/s", (r) => r.lifecyclesPerSec),
      row("ack p50 ms", (r) => r.ackMs.p50),
      row("ack p99 ms", (r) => r.ackMs.p99),
      row("status p99 ms", (r) => r.statusMs.p99),
      row("server/workers CPU % of one core (sum)", (r) => r.serverCpuPct),
      row("server/workers CPU ms per message", (r) => r.serverCpuMsPerMsg),
      row("db backends CPU ms per message", (r) => r.dbCpuMsPerMsg),
      ...dbStateRows(results, [null]),
      {
        label: "acked msg/s / single node's",
        cells: [...results.map((r) => ratio(r.ackedPerSec, single.ackedPerSec)), null],
        ratio: true,
      },
      { label: "acked msg/s / relay msg/s (main scenario)", cells: [...results.map((r) => ratio(r.ackedPerSec, relay)), null], ratio: true },
    ],
    notes: [
      `${os.cpus().length} CPUs shared by the workers, PostgreSQL, Redis and the load generator`,
      ...(relay === null ? ["relay msg/s: run with the main scenario for the last row"] : []),
      ...problemNotes(results),
    ],
  };
  return { sections: [section], data: { instances: o.pm2Instances, results } };
}
