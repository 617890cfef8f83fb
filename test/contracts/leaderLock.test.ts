import { expect } from "chai";
import { LocalLeaderLock } from "../../src/cluster/LocalLeaderLock";
import { RedisLeaderLock } from "../../src/cluster/RedisLeaderLock";
import type { LeaderLock } from "../../src/messaging/ports";
import { uniqueId } from "../helpers/ids";
import { onMemoryAndRedis, type Implementation as ContractImplementation } from "../helpers/contracts";
import { sleep, waitFor } from "../helpers/wait";

/** LEADER_LEASE_MS of the Redis cases. */
const LEASE_MS = 300;

/** With memory the cluster is one node: every node() is that node, so "another node" is a second caller on it. */
type Implementation = ContractImplementation<
  () => LeaderLock,
  {
    /**
     * Redis: leadership is a lease that the holder keeps between runs (renewed while a run
     * lasts) until it releases it or dies and the lease lapses. Memory: there is no other node
     * to hand it to, so the lock is simply free whenever no run is in progress.
     */
    lease: boolean;
  }
>;

/** A run that lasts until `finish()` is called. */
function held() {
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  let ran = false;
  return {
    work: async () => {
      ran = true;
      await done;
    },
    finish: () => finish(),
    get ran() {
      return ran;
    },
  };
}

const counter = () => {
  let runs = 0;
  return { work: async () => void runs++, get runs() { return runs; } };
};

function leaderLockContract(impl: Implementation): void {
  describe(`leader lock contract: ${impl.name}`, function () {
    this.timeout(15_000);
    const releaseAtEnd: LeaderLock[] = [];
    afterEach(async () => {
      await Promise.all(releaseAtEnd.splice(0).map((l) => l.release()));
    });
    const cluster = () => {
      const c = impl.cluster();
      return { node: () => { const n = c.node(); releaseAtEnd.push(n); return n; } };
    };

    it("runs the work and answers true when the lock is free", async () => {
      const job = counter();
      expect(await cluster().node().runExclusive(uniqueId("job"), job.work)).to.equal(true);
      expect(job.runs).to.equal(1);
    });

    it("one holder at a time: while a run is in progress, no other node runs that job", async () => {
      const c = cluster();
      const [a, b] = [c.node(), c.node()];
      const name = uniqueId("job");
      const first = held();
      const running = a.runExclusive(name, first.work);
      await waitFor(() => first.ran, "the first run to start");
      const other = counter();
      expect(await b.runExclusive(name, other.work), "another node").to.equal(false);
      expect(other.runs, "the refused work did not run").to.equal(0);
      first.finish();
      expect(await running).to.equal(true);
    });

    it("one run at a time on one node too: a second run of the same job is refused while the first lasts", async () => {
      const node = cluster().node();
      const name = uniqueId("job");
      const first = held();
      const running = node.runExclusive(name, first.work);
      await waitFor(() => first.ran, "the first run to start");
      const second = counter();
      expect(await node.runExclusive(name, second.work), "the same node again").to.equal(false);
      expect(second.runs).to.equal(0);
      first.finish();
      await running;
      expect(await node.runExclusive(name, second.work), "once the first is over").to.equal(true);
    });

    it("different jobs do not exclude each other", async () => {
      const c = cluster();
      const [a, b] = [c.node(), c.node()];
      const first = held();
      const running = a.runExclusive(uniqueId("job"), first.work);
      await waitFor(() => first.ran, "the first run to start");
      const other = counter();
      expect(await b.runExclusive(uniqueId("job"), other.work)).to.equal(true);
      expect(other.runs).to.equal(1);
      first.finish();
      await running;
    });

    it("a run that fails rejects with its error, and its node can run the job again", async () => {
      const node = cluster().node();
      const name = uniqueId("job");
      let error: unknown;
      await node.runExclusive(name, async () => Promise.reject(new Error("boom"))).catch((err) => (error = err));
      expect((error as Error | undefined)?.message).to.equal("boom");
      const again = counter();
      expect(await node.runExclusive(name, again.work)).to.equal(true);
      expect(again.runs).to.equal(1);
    });

    it("release lets another node take it", async () => {
      const c = cluster();
      const [a, b] = [c.node(), c.node()];
      const name = uniqueId("job");
      expect(await a.runExclusive(name, async () => {})).to.equal(true);
      await a.release();
      const other = counter();
      expect(await b.runExclusive(name, other.work)).to.equal(true);
      expect(other.runs).to.equal(1);
    });

    if (impl.lease) {
      it("the holder keeps the lease between runs: another node is refused until it lapses or is released", async () => {
        const c = cluster();
        const [a, b] = [c.node(), c.node()];
        const name = uniqueId("job");
        expect(await a.runExclusive(name, async () => {})).to.equal(true);
        expect(await b.runExclusive(name, async () => {}), "another node right after").to.equal(false);
        expect(await a.runExclusive(name, async () => {}), "the holder again").to.equal(true);
      });

      it("an expired lease (its holder died without releasing) is taken over", async () => {
        const c = cluster();
        const [dead, b] = [c.node(), c.node()];
        const name = uniqueId("job");
        expect(await dead.runExclusive(name, async () => {})).to.equal(true);
        const takenAfter = Date.now();
        const other = counter();
        await waitFor(() => b.runExclusive(name, other.work), "the lease to lapse and another node to take it", 5000, 25);
        expect(Date.now() - takenAfter, "not before the lease ran out").to.be.at.least(LEASE_MS - 50);
        expect(other.runs).to.equal(1);
        expect(await dead.runExclusive(name, async () => {}), "the old holder is now refused").to.equal(false);
      });

      it("a run longer than the lease renews it: no other node takes over meanwhile", async () => {
        const c = cluster();
        const [a, b] = [c.node(), c.node()];
        const name = uniqueId("job");
        const long = held();
        const running = a.runExclusive(name, long.work);
        await waitFor(() => long.ran, "the long run to start");
        await sleep(LEASE_MS * 2);
        expect(await b.runExclusive(name, async () => {}), "two leases later").to.equal(false);
        long.finish();
        expect(await running).to.equal(true);
      });
    } else {
      it("the lock is free as soon as a run ends (no lease: one node, nobody to hand it to)", async () => {
        const c = cluster();
        const [a, b] = [c.node(), c.node()];
        const name = uniqueId("job");
        expect(await a.runExclusive(name, async () => {})).to.equal(true);
        expect(await b.runExclusive(name, async () => {})).to.equal(true);
      });
    }
  });
}

onMemoryAndRedis(
  "leader lock",
  leaderLockContract,
  {
    traits: { lease: false },
    cluster: () => {
      const only = new LocalLeaderLock();
      return () => only;
    },
  },
  { traits: { lease: true }, cluster: (redis, prefix) => () => new RedisLeaderLock(redis, uniqueId("node"), LEASE_MS, prefix) },
);
