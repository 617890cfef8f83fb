import { expect } from "chai";
import { MemoryPresenceTracker } from "../../src/cluster/MemoryPresenceTracker";
import { RedisPresenceTracker } from "../../src/cluster/RedisPresenceTracker";
import { systemClock } from "../../src/clock";
import { createLogger } from "../../src/log";
import { PresenceService } from "../../src/messaging/PresenceService";
import type { PresenceTracker } from "../../src/messaging/ports";
import type { Presence } from "../../src/protocol";
import { uniqueId } from "../helpers/ids";
import { onMemoryAndRedis, type Implementation as ContractImplementation } from "../helpers/contracts";
import { quiet, waitFor } from "../helpers/wait";

/** PRESENCE_TTL_MS of the Redis cases: a dead node's connections lapse after ttl·2/3 = 400 ms. */
const TTL_MS = 600;
const HEARTBEAT_MS = TTL_MS / 6;

/** With memory the cluster is one node: every node() is that node, and the cases about two nodes run their connections on it. */
type Implementation = ContractImplementation<
  () => PresenceTracker,
  {
    /**
   * Redis: a node that dies without disconnecting leaves entries that expire, and another
   * node's heartbeat reaps them. Memory: the one node is this process and sees every
     * disconnect, so nothing ever expires and there is nothing to reap.
     */
    expires: boolean;
  }
>;

/**
 * The PresenceService of one node, with a recorded notifier and an in-memory last-seen
 * store, which refuses the users in `refuse` (a database error).
 */
function serviceOn(tracker: PresenceTracker, refuse: string[] = []) {
  const reported: Presence[] = [];
  const lastSeen = new Map<string, Date>();
  const store = {
    setLastSeen: async (userId: string, at: Date) => {
      if (refuse.includes(userId)) throw new Error("database unavailable");
      lastSeen.set(userId, at);
    },
    lastSeen: async (ids: string[]) => new Map(ids.filter((id) => lastSeen.has(id)).map((id) => [id, lastSeen.get(id)!])),
  };
  const service = new PresenceService(tracker, store, { presence: (p) => reported.push(p) }, systemClock, createLogger("silent"), HEARTBEAT_MS);
  return { service, reported, lastSeen, of: (userId: string) => reported.filter((p) => p.userId === userId) };
}

function presenceContract(impl: Implementation): void {
  describe(`presence tracker contract: ${impl.name}`, function () {
    this.timeout(15_000);
    const started: PresenceService[] = [];
    afterEach(async () => {
      await Promise.all(started.splice(0).map((s) => s.stop()));
    });

    it("a first connection makes the user online, and is reported once", async () => {
      const node = impl.cluster().node();
      const { service, of } = serviceOn(node);
      const user = uniqueId("p");
      await service.connected(user, "c1");
      expect(of(user)).to.deep.equal([{ userId: user, online: true, lastSeen: null }]);
      expect([...(await node.online([user]))]).to.deep.equal([user]);
      expect(await service.snapshot([user])).to.deep.equal([{ userId: user, online: true, lastSeen: null }]);
    });

    it("two connections, then one disconnects: still online, nothing reported after the first", async () => {
      const node = impl.cluster().node();
      const user = uniqueId("p");
      expect(await node.connected(user, "c1"), "first connection").to.equal(true);
      expect(await node.connected(user, "c2"), "second connection").to.equal(false);
      expect(await node.disconnected(user, "c1"), "one of two gone").to.equal(false);
      expect([...(await node.online([user]))]).to.deep.equal([user]);
    });

    it("the last disconnect makes the user offline, reported with lastSeen, which is stored", async () => {
      const node = impl.cluster().node();
      const { service, of, lastSeen } = serviceOn(node);
      const user = uniqueId("p");
      await service.connected(user, "c1");
      await service.connected(user, "c2");
      await service.disconnected(user, "c2");
      const before = Date.now();
      await service.disconnected(user, "c1");
      const offline = of(user).slice(1);
      expect(offline.map((p) => p.online)).to.deep.equal([false]);
      expect(Date.parse(offline[0]!.lastSeen!)).to.be.within(before, Date.now());
      expect(lastSeen.get(user)?.toISOString()).to.equal(offline[0]!.lastSeen);
      expect(await node.online([user])).to.have.property("size", 0);
      expect(await service.snapshot([user])).to.deep.equal([{ userId: user, online: false, lastSeen: offline[0]!.lastSeen }]);
    });

    it("a disconnect of an unknown or already gone connection changes nothing", async () => {
      const node = impl.cluster().node();
      const user = uniqueId("p");
      expect(await node.disconnected(user, "never"), "never connected").to.equal(false);
      await node.connected(user, "c1");
      expect(await node.disconnected(user, "other"), "another connection id").to.equal(false);
      expect(await node.disconnected(user, "c1"), "the last one").to.equal(true);
      expect(await node.disconnected(user, "c1"), "the same one again").to.equal(false);
    });

    it("online() answers for each user separately", async () => {
      const node = impl.cluster().node();
      const [a, b, c] = [uniqueId("a"), uniqueId("b"), uniqueId("c")];
      await node.connected(a, "c1");
      await node.connected(c, "c2");
      expect([...(await node.online([a, b, c]))].sort()).to.deep.equal([a, c].sort());
      expect(await node.online([])).to.have.property("size", 0);
    });

    it("a user with connections on two nodes stays online until the last one goes", async () => {
      const cluster = impl.cluster();
      const [one, two] = [cluster.node(), cluster.node()];
      const user = uniqueId("p");
      expect(await one.connected(user, "c1")).to.equal(true);
      expect(await two.connected(user, "c2")).to.equal(false);
      expect([...(await one.online([user]))], "seen from the first node").to.deep.equal([user]);
      expect(await one.disconnected(user, "c1")).to.equal(false);
      expect([...(await one.online([user]))], "the other node still has one").to.deep.equal([user]);
      expect(await two.disconnected(user, "c2")).to.equal(true);
      expect(await one.online([user])).to.have.property("size", 0);
    });

    it("heartbeats keep live connections: no one reported back, no one reaped", async () => {
      const node = impl.cluster().node();
      const user = uniqueId("p");
      await node.connected(user, "c1");
      for (let i = 0; i < 4; i++) {
        expect(await node.refresh(), `heartbeat ${i + 1}`).to.deep.equal([]);
        expect(await node.reap(), `reap ${i + 1}`).to.deep.equal([]);
        await quiet(HEARTBEAT_MS);
      }
      expect([...(await node.online([user]))], "online after four heartbeats, past the TTL").to.deep.equal([user]);
    });

    if (impl.expires) {
      it("a dead node's connections are reaped after the TTL by another node, reported offline with lastSeen", async () => {
        const cluster = impl.cluster();
        const dead = cluster.node(); // connects, then never heartbeats nor disconnects (kill -9)
        const survivor = serviceOn(cluster.node());
        started.push(survivor.service);
        const user = uniqueId("p");
        await dead.connected(user, "c1");
        const connectedAt = Date.now();
        survivor.service.start();
        await waitFor(() => survivor.of(user).length > 0, "the survivor to report the dead node's user offline", 5000);
        expect(Date.now() - connectedAt, "not before the entry's deadline (ttl·2/3)").to.be.at.least((TTL_MS * 2) / 3 - 20);
        expect(survivor.of(user).map((p) => p.online)).to.deep.equal([false]);
        expect(survivor.lastSeen.has(user), "last seen stored").to.equal(true);
        expect(await dead.online([user])).to.have.property("size", 0);
      });

      it("a dead node's users are all reaped and reported offline; one whose last seen cannot be stored keeps none from the others", async () => {
        const cluster = impl.cluster();
        const dead = cluster.node();
        const users = Array.from({ length: 20 }, () => uniqueId("p"));
        const refused = users[3]!;
        const survivor = serviceOn(cluster.node(), [refused]);
        started.push(survivor.service);
        for (const [i, user] of users.entries()) await dead.connected(user, `c${i}`);
        survivor.service.start();
        await waitFor(() => users.every((u) => survivor.of(u).length > 0), "every user of the dead node reported offline", 5000);
        for (const user of users) expect(survivor.of(user).map((p) => p.online), user).to.deep.equal([false]);
        expect(users.filter((u) => !survivor.lastSeen.has(u)), "stored for all but the refused one").to.deep.equal([refused]);
      });

      it("a node that stalled past the TTL brings its reaped users back with its next heartbeat", async () => {
        const cluster = impl.cluster();
        const stalled = cluster.node();
        const other = cluster.node();
        const user = uniqueId("p");
        await stalled.connected(user, "c1");
        await waitFor(async () => (await other.reap()).includes(user), "the stalled node's user reaped", 5000);
        expect(await stalled.refresh(), "reported back online").to.deep.equal([user]);
        expect([...(await other.online([user]))]).to.deep.equal([user]);
        expect(await stalled.refresh(), "only once").to.deep.equal([]);
      });
    } else {
      it("a connection is never reaped, however long without heartbeat (one node sees every disconnect)", async () => {
        const node = impl.cluster().node();
        const watcher = serviceOn(node);
        started.push(watcher.service);
        const user = uniqueId("p");
        await node.connected(user, "c1");
        watcher.service.start();
        await quiet(TTL_MS * 2);
        expect(watcher.of(user), "nothing reported").to.deep.equal([]);
        expect([...(await node.online([user]))]).to.deep.equal([user]);
      });

      it("a heartbeat never reports anyone back: nothing of this node is ever reaped", async () => {
        const node = impl.cluster().node();
        await node.connected(uniqueId("p"), "c1");
        await quiet(TTL_MS);
        expect(await node.reap()).to.deep.equal([]);
        expect(await node.refresh()).to.deep.equal([]);
      });
    }
  });
}

onMemoryAndRedis(
  "presence",
  presenceContract,
  {
    traits: { expires: false },
    cluster: () => {
      const only = new MemoryPresenceTracker();
      return () => only;
    },
  },
  { traits: { expires: true }, cluster: (redis, prefix) => () => new RedisPresenceTracker(redis, uniqueId("node"), TTL_MS, prefix) },
);
