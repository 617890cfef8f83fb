import { expect } from "chai";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import Redis from "ioredis";
import { Client } from "pg";
import { presenceDeadlinesKey } from "../src/cluster/RedisPresenceTracker";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { waitFor } from "./helpers/device";
import { freePort, ROOT, startPrivateRedis, type RedisProcess } from "./helpers/processes";
import { mintToken } from "./helpers/server";
import { connectAndSync, distinct, newStats, sendReliably, reconnectingClient, type ReconnectingClient } from "./helpers/reconnectingClient";
import { sleep } from "./helpers/wait";

/**
 * The real deployment: the project's own pm2 runs the real pm2.config.js (cluster mode, two
 * workers on one port, NODE_ENV=production, JWT auth) against PostgreSQL and a private Redis,
 * and `pm2 reload` replaces both workers while 60 clients stream messages to each other.
 * Nothing acknowledged is lost or stored twice, and every message reaches its recipient.
 *
 * The daemon is private (its own PM2_HOME in a temporary folder) and killed afterwards;
 * no other PM2 daemon on the machine is touched.
 */
const PM2 = path.join(ROOT, "node_modules/.bin/pm2");
const CLIENTS = 60;
const SECRET = "pm2-test-secret-that-is-at-least-32-characters";

type Pm2Process = { pid: number; name: string; pm_id: number; pm2_env: Record<string, unknown> & { status: string } };
type Run = { code: number | null; stdout: string; stderr: string };

describe("pm2: the real pm2.config.js, two cluster workers, a reload under load", function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let redis: RedisProcess;
  let pg: Client;
  let pm2Home: string;
  let port: number;
  let prefix: string;
  let started = false;
  const clients: ReconnectingClient[] = [];

  /** Runs the project's pm2 against our private daemon only (PM2_HOME is always ours). */
  const pm2 = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(PM2, args, {
        cwd: ROOT,
        env: { ...process.env, ...env, PM2_HOME: pm2Home },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code, stdout, stderr }));
    });
  const jlist = async (): Promise<Pm2Process[]> => {
    const { stdout } = await pm2(["jlist"]);
    return (JSON.parse(stdout.slice(stdout.indexOf("["))) as Pm2Process[]).filter((p) => p.name === "ticks");
  };
  const onlinePids = async () => (await jlist()).filter((p) => p.pm2_env.status === "online" && p.pid > 0).map((p) => p.pid);
  /** Which worker pid holds each user's connection: the presence entries carry the node id (host:pid:random). */
  const socketsByPid = async (): Promise<Map<number, number>> => {
    const r = new Redis(redis.url, { lazyConnect: true });
    await r.connect();
    try {
      const entries = await r.zrange(presenceDeadlinesKey(prefix), "0", "-1");
      const byPid = new Map<number, number>();
      for (const e of entries) {
        const pid = Number(e.split(" ")[1]!.split("/")[0]!.split(":")[1]);
        byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
      }
      return byPid;
    } finally {
      r.disconnect();
    }
  };

  before(async () => {
    db = await createTestDatabase();
    redis = await startPrivateRedis();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
    pm2Home = mkdtempSync(path.join(tmpdir(), "ticks-pm2-"));
    port = await freePort();
    prefix = `ticks-pm2-${process.pid}-${Date.now()}`;
    // pm2 hands the caller's environment to the apps it starts; the ecosystem file adds NODE_ENV=production.
    started = true;
    const start = await pm2(["start", "pm2.config.js"], {
      INSTANCES: "2",
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      AUTH_MODE: "jwt",
      JWT_SECRET: SECRET,
      LOG_LEVEL: "info",
      // The operator default: nothing is rescued by redelivery within the test, so a receipt
      // lost in the reload would leave its message `sent` and fail it.
      REDELIVERY_AFTER_MS: process.env.PM2_TEST_REDELIVERY_AFTER_MS ?? "30000",
      DELIVERY_ACK_TIMEOUT_MS: "2000",
    });
    expect(start.code, `pm2 start: ${start.stderr}`).to.equal(0);
  });

  afterEach(function () {
    if (this.currentTest?.state !== "failed" || !pm2Home) return;
    const logs = path.join(pm2Home, "logs");
    for (const f of readdirSync(logs)) {
      const lines = readFileSync(path.join(logs, f), "utf8").split("\n").slice(-20);
      console.log(`--- ${f}\n${lines.map((l) => l.slice(0, 400)).join("\n")}`);
    }
    console.log(`--- pm2.log\n${readFileSync(path.join(pm2Home, "pm2.log"), "utf8").split("\n").slice(-30).join("\n")}`);
  });

  after(async () => {
    clients.splice(0).forEach((c) => c.socket.disconnect());
    if (started) {
      const pids = await onlinePids().catch(() => [] as number[]);
      let daemon = 0;
      try {
        daemon = Number(readFileSync(path.join(pm2Home, "pm2.pid"), "utf8").trim());
      } catch {
        /* no daemon came up */
      }
      await pm2(["kill"]);
      // pm2 kill stops the apps and the daemon; anything of ours still alive goes by pid.
      for (const pid of [...pids, daemon].filter((p) => p > 0)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* gone, as expected */
        }
      }
    }
    if (pm2Home) rmSync(pm2Home, { recursive: true, force: true });
    await pg?.end();
    await redis?.stop();
    await db?.drop();
  });

  it("spreads 60 clients over both workers and keeps every message through `pm2 reload`", async () => {
    // Both workers online (wait_ready: each said "ready"), and the shared port ready.
    await waitFor(notYetOnError(async () => (await onlinePids()).length === 2), "two workers online", 30_000, 200);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(notYetOnError(async () => (await httpGet(`${url}/readyz`)).status === 200), "GET /readyz 200", 30_000, 200);
    const workers = await jlist();
    const before = workers.map((p) => p.pid).sort(byNumber);
    for (const p of workers) {
      expect(p.pm2_env.exec_mode).to.equal("cluster_mode");
      expect(p.pm2_env.NODE_ENV, "set by pm2.config.js").to.equal("production");
      expect(p.pm2_env.DATABASE_URL, "the caller's environment reached the app").to.equal(db.url);
    }

    // 60 devices, JWT auth, WebSocket only; the master spreads their connections over the workers.
    const users = Array.from({ length: CLIENTS }, (_, i) => `pm2user${i}`);
    for (const userId of users) clients.push(reconnectingClient(url, userId, { token: await mintToken(userId, { secret: SECRET }) }));
    await Promise.all(clients.map((c) => connectAndSync(c, 30_000)));
    await waitFor(notYetOnError(async () => sum(await socketsByPid()) === CLIENTS), "every connection in presence", 10_000, 200);
    const spreadBefore = await socketsByPid();
    const metricsSeen = await sampleMetrics(url, 8);
    console.log(`    workers ${before.join(", ")}: sockets by pid ${fmt(spreadBefore)}; /metrics samples ${metricsSeen}`);
    expect([...spreadBefore.keys()].sort(byNumber)).to.deep.equal(before);
    for (const n of spreadBefore.values()) expect(n, "connections on each worker").to.be.greaterThan(0);

    // Each client streams to the next one, retrying with the same clientMsgId until acknowledged.
    const stats = newStats();
    const acked: Message[] = [];
    const ackedOn = new Map<string, { connection: number; at: number }>();
    let streaming = true;
    const loops = clients.map(async (c, i) => {
      const to = users[(i + 1) % CLIENTS]!;
      for (let n = 0; streaming; n++) {
        const m = await sendReliably(c, { clientMsgId: `${c.userId}:${n}`, to, content: `${n} from ${c.userId}` }, stats);
        acked.push(m);
        ackedOn.set(m.id, { connection: c.connects, at: Date.now() });
        await sleep(150 + Math.random() * 200);
      }
    });
    await waitFor(() => stats.acknowledged >= 400, "the stream under way", 30_000);
    const beforeReload = stats.acknowledged;
    const reloadStarted = Date.now();
    const reload = await pm2(["reload", "ticks"]);
    const reloadMs = Date.now() - reloadStarted;
    const duringReload = stats.acknowledged - beforeReload;
    expect(reload.code, `pm2 reload: ${reload.stderr}`).to.equal(0);
    await waitFor(notYetOnError(async () => (await onlinePids()).length === 2), "two workers online after the reload", 30_000, 200);
    const after = (await onlinePids()).sort(byNumber);
    expect(after.filter((p) => before.includes(p)), "both workers replaced").to.deep.equal([]);
    await waitFor(() => clients.every((c) => c.socket.connected && c.connects >= 2), "every client reconnected", 20_000);
    const afterReload = stats.acknowledged;
    await waitFor(() => stats.acknowledged >= afterReload + 400, "the stream going on after the reload", 30_000);
    streaming = false;
    await Promise.all(loops);
    const reasons = count(clients.flatMap((c) => c.disconnects));
    const spreadAfter = await socketsByPid();

    // Every acknowledged message is in the database, once; nothing unacknowledged slipped in twice.
    const { rows } = await pg.query<{ message_id: string; from_user_id: string; client_msg_id: string; to_user_id: string }>(
      "SELECT message_id, from_user_id, client_msg_id, to_user_id FROM messages",
    );
    const keys = new Set(rows.map((r) => `${r.from_user_id} ${r.client_msg_id}`));
    const ids = new Set(rows.map((r) => r.message_id));
    // Every recipient ends with every message addressed to it (de-duplicated by id).
    const missing = () => rows.filter((r) => !distinct(clients[users.indexOf(r.to_user_id)]!).has(r.message_id));
    const stoppedAt = Date.now();
    await waitFor(() => missing().length === 0, "every message delivered", 30_000).catch(() => {});
    const deliveredMs = Date.now() - stoppedAt;
    const lost = missing();
    const delivered = clients.reduce((n, c) => n + distinct(c).size, 0);
    const raw = clients.reduce((n, c) => n + c.raw.length, 0);
    // Every receipt reaches the database: nothing left 'sent'.
    const undelivered = async () =>
      (await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE status = 'sent'")).rows[0].n as number;
    const settleStart = Date.now();
    const sentAtEnd = await undelivered();
    await waitFor(async () => (await undelivered()) === 0, "no row left 'sent'", 30_000, 200).catch(() => {}); // reported below
    const settleMs = Date.now() - settleStart;
    const stillSent = await undelivered();
    if (stillSent > 0) {
      const stuck = await pg.query(
        `SELECT d.message_id, m.from_user_id, d.recipient_id, m.created_at FROM message_delivery d
         JOIN messages m USING (message_id) WHERE d.status = 'sent'`,
      );
      for (const r of stuck.rows) {
        const c = clients[users.indexOf(r.recipient_id)]!;
        const times = c.raw.filter((m) => m.id === r.message_id).length;
        const sender = clients[users.indexOf(r.from_user_id)]!;
        const a = ackedOn.get(r.message_id)!;
        console.log(
          `    still 'sent': ${r.message_id} ${r.from_user_id} -> ${r.recipient_id} at ${r.created_at.toISOString()}, received ${times}x; ` +
            `acked on the sender's connection #${a.connection} at ${new Date(a.at).toISOString()}, sender disconnected at ` +
            `${sender.disconnectedAt.map((t) => new Date(t).toISOString()).join(", ")}; recipient disconnected at ` +
            `${c.disconnectedAt.map((t) => new Date(t).toISOString()).join(", ")}`,
        );
        for (const line of readWorkerLogs(pm2Home).split("\n").filter((l) => l.includes(r.message_id))) console.log(`      ${line.slice(0, 600)}`);
      }
    }
    const log = readWorkerLogs(pm2Home);
    const daemonLog = readFileSync(path.join(pm2Home, "pm2.log"), "utf8");

    console.log(
      `    reload took ${reloadMs} ms (${duringReload} acks during it); workers after ${after.join(", ")}: sockets by pid ${fmt(spreadAfter)}\n` +
        `    sent ${stats.intended}, attempts ${stats.attempts}, acknowledged ${stats.acknowledged} (duplicate acks ${stats.duplicateAcks}, ` +
        `UNAVAILABLE ${stats.unavailable}, RATE_LIMITED ${stats.rateLimited}, no answer ${stats.noAnswer}), stored ${rows.length}, ` +
        `delivered ${delivered} (all in ${deliveredMs} ms after the stream stopped), duplicates before de-dup ${raw - delivered}, ` +
        `lost ${lost.length}; 'sent' in message_delivery: ${sentAtEnd} then, ${stillSent} after ${settleMs} ms more; ` +
        `client disconnect reasons ${JSON.stringify(reasons)}`,
    );

    expect(acked.filter((m) => !ids.has(m.id)), "acknowledged but not stored").to.deep.equal([]);
    expect(keys.size, "one row per (from_user_id, client_msg_id)").to.equal(rows.length);
    expect(rows.length, "stored = sent").to.equal(stats.intended);
    expect([...stats.answers].filter(([, s]) => s.size !== 1), "a clientMsgId answered with two ids").to.deep.equal([]);
    expect(lost.map((r) => r.message_id), "lost").to.deep.equal([]);
    expect(delivered).to.equal(rows.length);
    expect(stillSent, "messages still 'sent'").to.equal(0);

    // The reload was graceful: the old workers drained and exited by themselves on SIGINT,
    // their clients were closed at the transport level and reconnected to the new workers.
    expect(Object.keys(reasons), "disconnect reasons").to.deep.equal(["transport close"]);
    expect([...spreadAfter.keys()].sort(byNumber), "connections now on the new workers").to.deep.equal(after);
    for (const pid of before) {
      expect(log, `worker ${pid} shut down on SIGINT`).to.match(new RegExp(`"pid":${pid},"signal":"SIGINT","msg":"shutting down"`));
    }
    expect(log).to.not.include("unclean shutdown");
    expect(daemonLog.match(/App \[ticks:_old_\d\] exited with code \[0\] via signal \[SIGINT\]/g), "old workers exited 0").to.have.length(2);
    for (const p of await jlist()) {
      expect(p.pm2_env.restart_time, "one restart each: the reload").to.equal(1);
      expect(p.pm2_env.DATABASE_URL, "the environment kept across the reload").to.equal(db.url);
    }
  });
});

/** A condition that counts a failure (the port not listening yet, pm2 busy) as "not yet". */
function notYetOnError(condition: () => Promise<boolean>): () => Promise<boolean> {
  return () => condition().catch(() => false);
}

/** One GET on a fresh connection (no keep-alive), so successive requests can reach different workers. */
function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
  });
}

/** Which workers answered /metrics: their start times and connected-socket gauges. */
async function sampleMetrics(url: string, times: number): Promise<string> {
  const seen = new Map<string, string>();
  for (let i = 0; i < times; i++) {
    const { body } = await httpGet(`${url}/metrics`);
    const start = /^process_start_time_seconds (\S+)$/m.exec(body)?.[1] ?? "?";
    const sockets = /^ticks_connected_sockets (\S+)$/m.exec(body)?.[1] ?? "?";
    seen.set(start, sockets);
  }
  return [...seen].map(([start, sockets]) => `worker started ${start}: ${sockets} sockets`).join("; ");
}

function readWorkerLogs(home: string): string {
  const dir = path.join(home, "logs");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".log"))
    .map((f) => readFileSync(path.join(dir, f), "utf8"))
    .join("\n");
}

const byNumber = (a: number, b: number) => a - b;
const sum = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const fmt = (m: Map<number, number>) => [...m].map(([pid, n]) => `${pid}: ${n}`).join(", ");
const count = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x] = (acc[x] ?? 0) + 1), acc), {});
