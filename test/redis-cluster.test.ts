import { expect } from "chai";
import type { Cluster } from "ioredis";
import type { Presence } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { printNodeOutput, spawnNode, startPrivateRedis, type NodeProcess } from "./helpers/processes";
import { useRedisCluster } from "./helpers/redisCluster";
import { expectOk } from "./helpers/replies";

/**
 * Two real server processes sharing one database and a Redis Cluster of 3 masters and 3
 * replicas (REDIS_CLUSTER_NODES): rooms, presence, rate limits and leases work across
 * nodes with their keys spread over the masters. The master-killed-mid-flood case is in the
 * fault suite (test/faults/redis-cluster-failover.fault.ts).
 */
describe("Redis Cluster (REDIS_CLUSTER_NODES): two nodes", function () {
  this.timeout(60_000);
  const redis = useRedisCluster();
  const prefix = uniqueId("rc");
  let db: TestDatabase;
  let nodes: NodeProcess[] = [];
  const devices: Device[] = [];
  const env = () => ({
    DATABASE_URL: db.url,
    REDIS_CLUSTER_NODES: redis.cluster.seeds,
    REDIS_PREFIX: prefix,
    AUTH_MODE: "dev",
    RATE_LIMIT_EVENTS_PER_SEC: "10",
    RATE_LIMIT_BURST: "0",
    PRESENCE_TTL_MS: "1500",
    LEADER_LEASE_MS: "1000",
    EXPIRY_SWEEP_INTERVAL_MS: "300",
  });
  const device = (node: NodeProcess, userId: string) => {
    const d = new Device(node.url, { userId });
    devices.push(d);
    return d;
  };

  before(async () => {
    db = await createTestDatabase();
    nodes = await Promise.all([spawnNode(env()), spawnNode(env())]);
  });
  afterEach(function () {
    devices.splice(0).forEach((d) => d.close());
    if (this.currentTest?.state === "failed") printNodeOutput(nodes);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    await db.drop();
  });

  it("delivers live across nodes and brings the receipt back", async () => {
    const [A, B] = nodes as [NodeProcess, NodeProcess];
    const b = uniqueId("bob");
    const alice = await device(A, uniqueId("alice")).connectSynced();
    const bob = await device(B, b).connectSynced();
    const m = await alice.send(b, "through a Redis Cluster");
    await waitFor(() => bob.live.length === 1, "live message on the other node");
    expect(bob.live[0]).to.deep.equal(m);
    await waitFor(() => alice.statuses.some((s) => s.status === "delivered" && s.messageIds.includes(m.id)), "delivered receipt");
  });

  it("shows presence across nodes", async () => {
    const [A, B] = nodes as [NodeProcess, NodeProcess];
    const watcher = await device(A, uniqueId("watcher")).connectSynced();
    const e = uniqueId("erin");
    const seen: Presence[] = [];
    watcher.socket.on("presence", (p) => seen.push(p));
    expectOk(await watcher.request("presence:subscribe", { userIds: [e] }));
    const erin = await device(B, e).connectSynced();
    await waitFor(() => seen.some((p) => p.online), "online event from the other node");
    erin.close();
    await waitFor(() => seen.some((p) => p.userId === e && !p.online), "offline event");
  });

  it("holds one rate-limit budget per user across nodes", async () => {
    const [A, B] = nodes as [NodeProcess, NodeProcess];
    const a = uniqueId("alice");
    const phone = await device(A, a).connectSynced();
    const laptop = await device(B, a).connectSynced();
    const burst = (d: Device) => Promise.all(Array.from({ length: 15 }, () => d.request("conversation:list", {})));
    const replies = (await Promise.all([burst(phone), burst(laptop)])).flat();
    const ok = replies.filter((r) => r.ok).length;
    // 10 a second, whichever node: 30 at once can get at most two windows' worth.
    expect(ok).to.be.within(1, 20);
    expect(replies.filter((r) => !r.ok && r.error.code === "RATE_LIMITED").length).to.equal(30 - ok);
  });

  it("spreads its keys over the masters: rate-limit counters on several, presence in one slot", async () => {
    const a = uniqueId("spread");
    const users = Array.from({ length: 12 }, (_, i) => `${a}-${i}`);
    const connected = await Promise.all(users.map((u, i) => device(nodes[i % 2]!, u).connectSynced()));
    for (const d of connected) expectOk(await d.request("conversation:list", {}));
    const byMaster = await keysByMaster(redis.client, prefix);
    const rateLimitMasters = [...byMaster].filter(([, keys]) => keys.some((k) => k.startsWith(`${prefix}:rl:`))).length;
    const presenceMasters = [...byMaster].filter(([, keys]) => keys.some((k) => k.startsWith(`{${prefix}:presence}`))).length;
    expect(byMaster.size, "masters").to.equal(3);
    expect(rateLimitMasters, "masters holding rate-limit counters").to.be.greaterThan(1);
    expect(presenceMasters, "masters holding presence keys (one hash slot)").to.equal(1);
  });

  it("runs the expiry sweep on one node at a time and hands the lease over when that node dies", async () => {
    const holder = () => redis.client.get(`${prefix}:leader:expiry-sweep`);
    let leader: string | null = null;
    await waitFor(async () => (leader = await holder()) !== null, "a node to take the expiry-sweep lease", 5000, 100);
    const victim = nodes.find((n) => n.pid === Number(leader!.split(":")[1]));
    expect(victim, "the leader is one of ours").to.not.equal(undefined);
    await victim!.kill("SIGKILL");
    nodes = nodes.filter((n) => n !== victim);
    let next: string | null = null;
    await waitFor(async () => ((next = await holder()) ?? leader) !== leader, () => `the other node to take over (holder: ${next})`, 5000, 100);
    expect(Number(next!.split(":")[1])).to.equal(nodes[0]!.pid);
  });
});

describe("REDIS_CLUSTER_NODES refused at start", function () {
  this.timeout(30_000);
  // Its own database: a server that gets as far as its migrations must never build the
  // schema in PostgreSQL's maintenance database (it once did, and every checkout whose
  // migrations differ then failed here).
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db?.drop());
  const refusal = async (env: Record<string, string>) => {
    const err = await spawnNode({ AUTH_MODE: "dev", DATABASE_URL: db.url, ...env }).then(
      (n) => n.kill("SIGKILL").then(() => null),
      (e: Error) => e,
    );
    expect(err, "the server must not start").to.be.an("error");
    return err!.message;
  };

  it("malformed seeds", async () => {
    for (const bad of ["redis-1", "redis-1:0", "redis-1:6379,", "a b:1", "redis-1:99999"]) {
      const message = await refusal({ REDIS_CLUSTER_NODES: bad });
      expect(message, bad).to.match(/exited with 78/).and.match(/REDIS_CLUSTER_NODES: .* is not host:port/);
    }
  });

  it("set together with REDIS_URL", async () => {
    const message = await refusal({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", REDIS_URL: "redis://127.0.0.1:6379" });
    expect(message).to.match(/exited with 78/).and.match(/REDIS_CLUSTER_NODES: cannot be combined with REDIS_URL/);
  });

  it("no reachable seed, or a seed that is a single Redis: a clear message, no fallback", async () => {
    const closed = await refusal({ REDIS_CLUSTER_NODES: "127.0.0.1:1" });
    expect(closed).to.match(/REDIS_CLUSTER_NODES=127\.0\.0\.1:1: no working Redis Cluster there/);
    const single = await startPrivateRedis();
    try {
      const message = await refusal({ REDIS_CLUSTER_NODES: `127.0.0.1:${single.port}` });
      expect(message).to.match(/no working Redis Cluster there/);
    } finally {
      await single.stop();
    }
  });
});

/** Every key of the prefix, grouped by the master holding it. */
async function keysByMaster(client: Cluster, prefix: string): Promise<Map<string, string[]>> {
  const result = new Map<string, string[]>();
  for (const node of client.nodes("master")) {
    const keys = await node.keys(`*${prefix}*`);
    result.set(`${node.options.host}:${node.options.port}`, keys);
  }
  return result;
}
