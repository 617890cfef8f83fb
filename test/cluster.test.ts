import { expect } from "chai";
import { Client } from "pg";
import Redis from "ioredis";
import type { Message, Presence } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { printNodeOutput, spawnNode, startPrivateRedis, type NodeProcess, type RedisProcess } from "./helpers/processes";
import { expectOk } from "./helpers/replies";

/**
 * Three real server processes sharing one PostgreSQL database and a private Redis: the
 * protocol's guarantees hold whichever node each socket is on.
 */
for (const adapter of ["sharded", "classic"] as const) {
  describe(`cluster: three nodes through Redis (${adapter} adapter)`, function () {
    this.timeout(60_000);
    let db: TestDatabase;
    let redis: RedisProcess;
    let pg: Client;
    let nodes: NodeProcess[] = [];
    const devices: Device[] = [];
    const env = () => ({
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      REDIS_ADAPTER: adapter,
      AUTH_MODE: "dev",
      RATE_LIMIT_EVENTS_PER_SEC: "0",
      PRESENCE_TTL_MS: "1500",
      LEADER_LEASE_MS: "1000",
      EXPIRY_SWEEP_INTERVAL_MS: "300",
      REDELIVERY_AFTER_MS: "1000",
      DELIVERY_ACK_TIMEOUT_MS: "1000",
    });
    const device = (node: NodeProcess, userId: string, options: { deviceId?: string; autoAck?: boolean } = {}) => {
      const d = new Device(node.url, { userId, ...options });
      devices.push(d);
      return d;
    };

    before(async () => {
      db = await createTestDatabase();
      redis = await startPrivateRedis();
      pg = new Client({ connectionString: db.url });
      await pg.connect();
      // All three start at once, as under PM2: migrations must take turns, not fail.
      nodes = await Promise.all([spawnNode(env()), spawnNode(env()), spawnNode(env())]);
    });
    afterEach(function () {
      devices.splice(0).forEach((d) => d.close());
      if (this.currentTest?.state === "failed") printNodeOutput(nodes);
    });
    after(async () => {
      await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
      await pg.end();
      await redis.stop();
      await db.drop();
    });

    it("delivers live, returns receipts to every sender device and serves the backlog across nodes", async () => {
      const [A, B, C] = nodes as [NodeProcess, NodeProcess, NodeProcess];
      const a = uniqueId("alice");
      const b = uniqueId("bob");
      const c = uniqueId("carol");
      const phone = await device(A, a, { deviceId: "phone" }).connectSynced();
      const laptop = await device(C, a, { deviceId: "laptop" }).connectSynced();
      const bob = await device(B, b).connectSynced();

      const m = await phone.send(b, "across nodes");
      await waitFor(() => bob.live.length === 1, "live message on node B");
      expect(bob.live[0]).to.deep.equal(m);
      for (const d of [phone, laptop]) await waitFor(() => d.statuses.some((s) => s.status === "delivered"), "delivered");
      expect(laptop.statuses[0]).to.deep.include({ status: "delivered", by: b, messageIds: [m.id] });

      expect(await bob.request("message:read", { messageIds: [m.id] })).to.deep.equal({ ok: true, updated: 1 });
      for (const d of [phone, laptop]) await waitFor(() => d.statuses.some((s) => s.status === "read"), "read");

      // Carol is offline; her messages wait, and she drains them on a third node.
      const waiting = [await laptop.send(c, "one"), await phone.send(c, "two")];
      const carol = await device(B, c).connectSynced();
      expect(carol.received.map((x) => x.id)).to.deep.equal(waiting.map((x) => x.id));
      for (const d of [phone, laptop]) {
        await waitFor(() => d.statuses.filter((s) => s.by === c).flatMap((s) => s.messageIds).length === 2, "carol's receipts");
      }
    });

    it("keeps seq gap-free when one conversation is written from three nodes at once", async () => {
      const a = uniqueId("alice");
      const b = uniqueId("bob");
      const senders = [device(nodes[0]!, a), device(nodes[1]!, b), device(nodes[2]!, a)];
      await Promise.all(senders.map((d) => d.connectSynced()));
      const replies = await Promise.all(
        Array.from({ length: 90 }, (_, i) => senders[i % 3]!.send(i % 3 === 1 ? a : b, `m${i}`)),
      );
      expect(replies.map((m) => m.seq).sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 90 }, (_, i) => i + 1));
    });

    it("shows presence cluster-wide: online while any socket on any node is connected", async () => {
      const [A, B, C] = nodes as [NodeProcess, NodeProcess, NodeProcess];
      const watcher = await device(A, uniqueId("watcher")).connectSynced();
      const e = uniqueId("erin");
      const seen: Presence[] = [];
      watcher.socket.on("presence", (p) => seen.push(p));
      const first = await watcher.request("presence:subscribe", { userIds: [e] });
      expect(first).to.deep.equal({ ok: true, presence: [{ userId: e, online: false, lastSeen: null }] });

      const erinB = await device(B, e).connectSynced();
      await waitFor(() => seen.length === 1, "online event");
      expect(seen[0]).to.deep.equal({ userId: e, online: true, lastSeen: null });
      const erinC = await device(C, e).connectSynced();
      erinB.close();
      const again = await watcher.request("presence:subscribe", { userIds: [e] });
      expectOk(again);
      expect(again.presence[0]!.online).to.equal(true);
      erinC.close();
      await waitFor(() => seen.length === 2, "offline event");
      expect(seen[1]).to.include({ userId: e, online: false });
      // The event goes out before last_seen is written (PresenceService.wentOffline): wait for the row.
      let lastSeen: Date | null = null;
      await waitFor(
        async () => (lastSeen = (await pg.query("SELECT last_seen FROM users WHERE user_id = $1", [e])).rows[0]?.last_seen ?? null) !== null,
        "users.last_seen written",
      );
      expect(lastSeen!.toISOString()).to.equal(seen[1]!.lastSeen);
      expect(seen).to.have.length(2); // one socket closing while another stays was no event
    });

    it("runs the expiry sweep on one node at a time and hands it over when that node dies", async () => {
      const holder = async () => (await redisGet(redis, "ticks:leader:expiry-sweep")) as string | null;
      let leader: string | null = null;
      await waitFor(async () => (leader = await holder()) !== null, "a node to take the expiry-sweep lease", 5000, 100);
      const leaderPid = Number(leader!.split(":")[1]);
      const victim = nodes.find((n) => n.pid === leaderPid)!;
      expect(victim, "the leader is one of ours").to.not.equal(undefined);

      await victim.kill("SIGKILL");
      nodes = nodes.filter((n) => n !== victim);
      let next: string | null = null;
      await waitFor(async () => ((next = await holder()) ?? leader) !== leader, () => `another node to take over (holder: ${next})`, 5000, 100);
      expect(nodes.map((n) => n.pid)).to.include(Number(next!.split(":")[1]));
      nodes.push(await spawnNode(env())); // back to three for the tests after this one
    });

    it("shows a user offline within PRESENCE_TTL_MS when their node is killed", async () => {
      const victim = nodes[2]!;
      const watcher = await device(nodes[0]!, uniqueId("watcher")).connectSynced();
      const f = uniqueId("frank");
      const seen: Presence[] = [];
      watcher.socket.on("presence", (p) => seen.push(p));
      await watcher.request("presence:subscribe", { userIds: [f] });
      await device(victim, f).connectSynced();
      await waitFor(() => seen.some((p) => p.online), "online");
      const killedAt = Date.now();
      await victim.kill("SIGKILL");
      await waitFor(() => seen.some((p) => !p.online), "offline after the node died", 5000);
      expect(Date.now() - killedAt).to.be.lessThan(1500 + 500); // PRESENCE_TTL_MS, plus scheduling slack
      nodes[2] = await spawnNode(env());
    });

    it("keeps storing through a Redis outage and delivers what missed live delivery once Redis is back", async () => {
      const [A, B] = nodes as [NodeProcess, NodeProcess];
      const a = uniqueId("alice");
      const b = uniqueId("bob");
      const alice = await device(A, a).connectSynced();
      const bob = await device(B, b).connectSynced();
      await alice.send(b, "before");
      await waitFor(() => bob.live.length === 1, "live before the outage");

      await redis.stop();
      const during: Message[] = [];
      for (let i = 0; i < 5; i++) during.push(await alice.send(b, `during ${i}`)); // stored and acknowledged
      const ready = await fetch(`${A.url}/readyz`);
      expect(ready.status).to.equal(503);
      expect((await fetch(`${A.url}/healthz`)).status).to.equal(200);

      await redis.start();
      await waitFor(() => during.every((m) => bob.received.some((x) => x.id === m.id)), "redelivered after the outage", 20_000);
      const after = await alice.send(b, "after");
      await waitFor(() => bob.received.some((x) => x.id === after.id), "live after the outage", 10_000);
      // Every receipt reaches the database too: nothing is left undelivered.
      const undelivered = async () =>
        (
          await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE recipient_id = $1 AND status = 'sent'", [b])
        ).rows[0].n as number;
      await waitFor(async () => (await undelivered()) === 0, "every receipt stored (no row left 'sent')", 10_000, 100);
      for (const n of nodes) expect(n.child.exitCode, "no node crashed").to.equal(null);
    });
  });

}

async function redisGet(redis: RedisProcess, key: string): Promise<string | null> {
  const client = new Redis(redis.url, { lazyConnect: true });
  await client.connect();
  try {
    return await client.get(key);
  } finally {
    client.disconnect();
  }
}
