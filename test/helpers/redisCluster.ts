import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Cluster } from "ioredis";
import { freePort } from "./processes";
import { sleep } from "./wait";

const run = promisify(execFile);

export type ClusterNodeProcess = { port: number; pid: number; child: ChildProcess };

export type RedisClusterProcess = {
  readonly nodes: ClusterNodeProcess[];
  /** `127.0.0.1:p1,127.0.0.1:p2,…`: what REDIS_CLUSTER_NODES takes. */
  readonly seeds: string;
  /** Ports of the masters now, each with the slot ranges it serves (from CLUSTER NODES). */
  masters(): Promise<{ port: number; slots: string }[]>;
  /** SIGKILL to the one redis-server on that port (a pid this helper started). */
  kill(port: number): Promise<void>;
  /** Waits until every live node reports cluster_state:ok. */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
};

/** Short, so a killed master's replica is promoted within a couple of seconds. */
const NODE_TIMEOUT_MS = 1000;

const cli = (port: number, ...args: string[]) =>
  run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { encoding: "utf8" }).then((r) => r.stdout);

/**
 * A real Redis Cluster of 3 masters and 3 replicas on free ports, its files in a temp dir:
 * six `redis-server --cluster-enabled yes` processes joined by `redis-cli --cluster create`.
 * stop() kills them by pid and removes the dir. No persistence: a node that dies is gone.
 */
export async function startRedisCluster(): Promise<RedisClusterProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), "ticks-redis-cluster-"));
  const nodes: ClusterNodeProcess[] = [];
  const stop = async () => {
    await Promise.all(
      nodes.map(async (n) => {
        if (n.child.exitCode !== null || n.child.signalCode !== null) return;
        const gone = new Promise((r) => n.child.once("exit", r));
        process.kill(n.pid, "SIGKILL");
        await gone;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 6; i++) nodes.push(await startNode(dir, await freePort()));
    await cli(
      nodes[0]!.port,
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      "1",
      "--cluster-yes",
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const handle: RedisClusterProcess = {
    nodes,
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(","),
    masters: async () => {
      const live = nodes.find((n) => n.child.exitCode === null && n.child.signalCode === null)!;
      const lines = (await cli(live.port, "cluster", "nodes")).trim().split("\n");
      return lines
        .map((l) => l.split(" "))
        .filter((f) => f[2]!.includes("master") && !f[2]!.includes("fail"))
        .map((f) => ({ port: Number(f[1]!.split("@")[0]!.split(":")[1]), slots: f.slice(8).join(" ") }));
    },
    kill: async (port) => {
      const node = nodes.find((n) => n.port === port);
      if (!node) throw new Error(`no cluster node of ours on port ${port}`);
      const gone = new Promise((r) => node.child.once("exit", r));
      process.kill(node.pid, "SIGKILL");
      await gone;
    },
    healthy: async (timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
        const infos = await Promise.all(live.map((n) => cli(n.port, "cluster", "info").catch(() => "")));
        if (infos.every((i) => i.includes("cluster_state:ok"))) return;
        if (Date.now() > deadline) throw new Error(`redis cluster not healthy within ${timeoutMs} ms`);
        await sleep(100);
      }
    },
    stop,
  };
  try {
    await handle.healthy();
  } catch (err) {
    await stop();
    throw err;
  }
  return handle;
}

async function startNode(dir: string, port: number): Promise<ClusterNodeProcess> {
  const child = spawn(
    "redis-server",
    [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--cluster-enabled", "yes",
      "--cluster-config-file", path.join(dir, `nodes-${port}.conf`),
      "--cluster-node-timeout", String(NODE_TIMEOUT_MS),
      // A replica whose link to its master looked stale (a loaded machine, a flood) would
      // otherwise refuse to fail over for node-timeout × 10 + 10 s: the tests kill masters.
      "--cluster-replica-validity-factor", "0",
      "--dir", dir,
      "--save", "",
      "--appendonly", "no",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster redis-server on ${port} did not start`)), 10_000);
    child.stdout!.on("data", (c: Buffer) => {
      if (c.toString().includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`cluster redis-server on ${port} exited with ${code}`)));
  });
  child.stdout!.resume();
  return { port, pid: child.pid!, child };
}

export type RedisClusterSuite = { readonly cluster: RedisClusterProcess; readonly client: Cluster };

/**
 * A cluster of the suite's own and a client connected to it. Call it inside `describe`; it
 * registers before/after there.
 */
export function useRedisCluster(): RedisClusterSuite {
  let cluster: RedisClusterProcess | undefined;
  let client: Cluster | undefined;
  before(async function () {
    this.timeout(60_000);
    cluster = await startRedisCluster();
    client = new Cluster(
      cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
      { lazyConnect: true, redisOptions: { maxRetriesPerRequest: 1 } },
    );
    await client.connect();
  });
  after(async () => {
    client?.disconnect();
    await cluster?.stop();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("useRedisCluster: only there once the suite's before hook ran");
    return value;
  };
  return {
    get cluster() {
      return ready(cluster);
    },
    get client() {
      return ready(client);
    },
  };
}
