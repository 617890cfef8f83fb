/**
 * The multi-host test bed: a database host (a private PostgreSQL and Redis), app hosts that
 * each run `pm2 start pm2.config.js` with 2 workers and a PM2_HOME of their own, and a
 * load-balancer host running nginx with deploy/nginx/ticks.conf. Each host is a network
 * namespace on one bridge (network.ts); the test process sits on the bridge too and, as a
 * client, talks to nginx only. teardown() removes everything, and so does the start of the
 * next run if this one was killed before it could.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { ROOT } from "../helpers/processes";
import { PG_BIN } from "../helpers/privatePostgres";
import { sleep, waitFor } from "../helpers/wait";
import { checkPrerequisites, createNetwork, killAllIn, nsOf, pidsIn, removeNetwork, sh, SUBNET, type HostName } from "./network";

/** Fixed, so that a later run finds and removes what an aborted one left. */
export const BED_DIR = "/tmp/ticks-hosts-bed";
const PM2 = path.join(ROOT, "node_modules/.bin/pm2");
export const JWT_SECRET = "hosts-bed-secret-that-is-at-least-32-characters";
const APP_PORT = 3000;

const ipOf = (host: HostName): string =>
  host === "db" ? `${SUBNET}.10` : host === "lb" ? `${SUBNET}.30` : `${SUBNET}.${20 + Number(host.slice(3))}`;

export type Bed = {
  readonly appHosts: HostName[];
  /** nginx: the only address clients are given. */
  readonly lbUrl: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** The test's own connection to the database host, for the final accounting. */
  readonly pg: Client;
  ipOf(host: HostName): string;
  /** `pm2 start pm2.config.js` on that host; resolves once both workers are online and /readyz answers 200. */
  startApp(host: HostName): Promise<void>;
  /** `pm2 kill` on that host: SIGINT to each worker (drain), then the daemon exits. */
  stopApp(host: HostName): Promise<void>;
  /** SIGKILL to every process on that host at once (PM2 daemon and workers). */
  killApp(host: HostName): Promise<number[]>;
  /** The pids of the processes running on that host now. */
  pids(host: HostName): Promise<number[]>;
  /** GET /readyz on the host directly (a probe, as a health checker would; clients never do this). */
  readyz(host: HostName): Promise<number>;
  /** nginx's error log since the last call, counted by kind (what the report quotes); then emptied. */
  nginxErrors(): string;
  /** The last lines of that host's PM2 logs, for a failure report. */
  logs(host: HostName, lines?: number): string;
  teardown(): Promise<void>;
};

export async function startBed(options: { appHosts: number; env: Record<string, string> }): Promise<Bed> {
  await checkPrerequisites();
  const appHosts = Array.from({ length: options.appHosts }, (_, i) => `app${i + 1}` as HostName);
  const all: HostName[] = ["db", "lb", ...appHosts];
  await cleanLeftovers(all);
  const children: ChildProcess[] = [];
  const pgDir = path.join(BED_DIR, "pg");
  let pg: Client | undefined;
  const teardown = async () => {
    await pg?.end().catch(() => {});
    for (const host of appHosts) await pm2(host, ["kill"], 20_000).catch(() => {});
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await stopPostgres(pgDir).catch(() => {});
    await removeNetwork(all);
    rmSync(BED_DIR, { recursive: true, force: true });
  };

  const pm2Home = (host: HostName) => path.join(BED_DIR, `pm2-${host}`);
  const databaseUrl = `postgres://postgres@${ipOf("db")}:5432/postgres`;
  const redisUrl = `redis://${ipOf("db")}:6379`;
  const pm2 = (host: HostName, args: string[], timeoutMs = 60_000, env: Record<string, string> = {}) =>
    runIn(host, PM2, args, { ...env, PM2_HOME: pm2Home(host) }, timeoutMs);

  try {
    mkdirSync(BED_DIR, { recursive: true });
    await createNetwork(all.map((name) => ({ name, ip: ipOf(name) })));
    await startPostgres(pgDir, ipOf("db"));
    children.push(await startDaemon("db", "redis-server", [
      "--bind", ipOf("db"), "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no",
    ], "Ready to accept connections"));
    pg = new Client({ connectionString: databaseUrl });
    await pg.connect();
  } catch (err) {
    await teardown();
    throw err;
  }

  const appEnv = {
    INSTANCES: "2",
    PORT: String(APP_PORT),
    HOST: "0.0.0.0",
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    JWT_SECRET,
    LOG_LEVEL: "info",
    ...options.env,
  };
  const readyz = (host: HostName) =>
    fetch(`http://${ipOf(host)}:${APP_PORT}/readyz`, { signal: AbortSignal.timeout(3000) }).then(
      (r) => r.text().then(() => r.status),
      () => 0,
    );
  const bed: Bed = {
    appHosts,
    lbUrl: `http://${ipOf("lb")}`,
    databaseUrl,
    redisUrl,
    get pg() {
      return pg!;
    },
    ipOf,
    startApp: async (host) => {
      const out = await pm2(host, ["start", "pm2.config.js"], 90_000, appEnv);
      await waitFor(async () => {
        const list = await pm2(host, ["jlist"], 20_000).catch(() => "[]");
        const apps = JSON.parse(list.slice(list.indexOf("["))) as { pm2_env: { status: string } }[];
        return apps.filter((a) => a.pm2_env.status === "online").length === 2;
      }, () => `two workers online on ${host}: ${out}\n${bed.logs(host)}`, 60_000, 300);
      await waitFor(async () => (await readyz(host)) === 200, `/readyz 200 on ${host}`, 30_000, 200);
    },
    stopApp: async (host) => {
      await pm2(host, ["kill"], 60_000);
    },
    killApp: (host) => killAllIn(nsOf(host)),
    pids: (host) => pidsIn(nsOf(host)),
    readyz,
    nginxErrors: () => {
      const file = path.join(BED_DIR, "nginx", "error.log");
      if (!existsSync(file)) return "{}";
      const counts = new Map<string, number>();
      const span = new Map<string, string>();
      for (const line of readFileSync(file, "utf8").split("\n")) {
        // "2026/12/02 09:45:26 [error] 1#1: *1 connect() failed (111: …) while connecting to upstream, client: …, upstream: "http://10.231.77.22:3000/…""
        const m = /\[(\w+)\] \d+#\d+: (?:\*\d+ )?([^,]+)(?:.*upstream: "http:\/\/([\d.]+))?/.exec(line);
        if (!m) continue;
        const key = `${m[1]} ${m[2]!.replace(/\d{2,}/g, "N")}${m[3] ? ` @${m[3]}` : ""}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        const time = line.slice(11, 19);
        span.set(key, `${(span.get(key) ?? time).slice(0, 8)}-${time}`);
      }
      writeFileSync(file, "");
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 6);
      return JSON.stringify(Object.fromEntries(top.map(([k, n]) => [k, `${n}x ${span.get(k)}`])));
    },
    logs: (host, lines = 15) => {
      const dir = path.join(pm2Home(host), "logs");
      if (!existsSync(dir)) return `(no logs for ${host})`;
      return readdirSync(dir)
        .map((f) => `--- ${host} ${f}\n${readFileSync(path.join(dir, f), "utf8").split("\n").slice(-lines).map((l) => l.slice(0, 300)).join("\n")}`)
        .join("\n");
    },
    teardown,
  };
  try {
    // One host after the other: every worker migrates at start, and the first does the work.
    for (const host of appHosts) await bed.startApp(host);
    // Last: nginx would mark hosts that do not listen yet as failed for fail_timeout.
    children.push(await startNginx(appHosts));
  } catch (err) {
    await teardown();
    throw err;
  }
  return bed;
}

/** Whatever an earlier run left: PM2 daemons, PostgreSQL, namespaces, links, files. */
async function cleanLeftovers(all: HostName[]): Promise<void> {
  if (existsSync(path.join(BED_DIR, "pg", "data", "postmaster.pid"))) await stopPostgres(path.join(BED_DIR, "pg")).catch(() => {});
  await removeNetwork(all);
  rmSync(BED_DIR, { recursive: true, force: true });
}

/** Runs a command inside the host's namespace; resolves with its stdout, rejects with its output. */
function runIn(host: HostName, cmd: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", nsOf(host), cmd, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(" ")} on ${host} exited with ${code}:\n${out.slice(-2000)}`));
    });
  });
}

/** A long-running process inside a host's namespace (`ip netns exec` execs it: the pid is its own). */
async function startDaemon(host: HostName, cmd: string, args: string[], readyLine: string): Promise<ChildProcess> {
  const child = spawn("ip", ["netns", "exec", nsOf(host), cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} on ${host} did not start:\n${out}`)), 15_000);
    const seen = (c: Buffer) => {
      out += c.toString();
      if (out.includes(readyLine)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", seen);
    child.stderr!.on("data", seen);
    child.once("exit", (code) => reject(new Error(`${cmd} on ${host} exited with ${code}:\n${out}`)));
  });
  child.stdout!.removeAllListeners("data").resume();
  child.stderr!.removeAllListeners("data").resume();
  return child;
}

async function startPostgres(dir: string, ip: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const uid = Number((await sh("id", ["-u", "postgres"])).trim());
  const gid = Number((await sh("id", ["-g", "postgres"])).trim());
  chownSync(dir, uid, gid);
  const data = path.join(dir, "data");
  await sh("runuser", ["-u", "postgres", "--", path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  // The app hosts and the test process connect over the bridge.
  writeFileSync(path.join(data, "pg_hba.conf"), `local all all trust\nhost all all ${SUBNET}.0/24 trust\n`);
  await sh("ip", [
    "netns", "exec", nsOf("db"), "runuser", "-u", "postgres", "--", path.join(PG_BIN, "pg_ctl"),
    "-D", data, "-l", path.join(dir, "server.log"),
    // 3 hosts × 2 workers × 14 connections (docs/scaling.md), plus the test's own.
    "-o", `-p 5432 -k ${dir} -c listen_addresses=${ip} -c max_connections=200`,
    "-w", "-t", "60", "start",
  ]);
}

async function stopPostgres(dir: string): Promise<void> {
  await sh("runuser", ["-u", "postgres", "--", path.join(PG_BIN, "pg_ctl"), "-D", path.join(dir, "data"), "-m", "immediate", "-w", "stop"]);
}

/** nginx in the lb namespace: a main file of the bed's own around the repository's deploy/nginx/ticks.conf. */
async function startNginx(appHosts: HostName[]): Promise<ChildProcess> {
  const dir = path.join(BED_DIR, "nginx");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, "ticks-upstream-servers.conf"),
    appHosts.map((h) => `server ${ipOf(h)}:${APP_PORT} max_fails=0;\n`).join(""),
  );
  const temp = (name: string) => `${name}_temp_path ${path.join(dir, name)};`;
  writeFileSync(
    path.join(dir, "nginx.conf"),
    [
      "daemon off;",
      "worker_processes 1;",
      `pid ${path.join(dir, "nginx.pid")};`,
      `error_log ${path.join(dir, "error.log")} warn;`,
      "events { worker_connections 4096; }",
      "http {",
      "  access_log off;",
      `  ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}`,
      `  include ${path.join(ROOT, "deploy/nginx/ticks.conf")};`,
      "}",
      "",
    ].join("\n"),
  );
  const args = ["-p", dir, "-e", path.join(dir, "error.log"), "-c", path.join(dir, "nginx.conf")];
  await sh("ip", ["netns", "exec", nsOf("lb"), "nginx", "-t", ...args]);
  const child = spawn("ip", ["netns", "exec", nsOf("lb"), "nginx", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.resume();
  child.stderr!.resume();
  const url = `http://${ipOf("lb")}/healthz`;
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${readFileSync(path.join(dir, "error.log"), "utf8")}`);
    if (await fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.text().then(() => r.status === 200), () => false)) return child;
    await sleep(100);
  }
  throw new Error("nginx did not answer on the lb host");
}
