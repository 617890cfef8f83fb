import { expect } from "chai";
import { memoryRateLimiter, redisRateLimiter, type RateLimit } from "../../src/cluster/RateLimiter";
import type { RateLimiter } from "../../src/transport/ports";
import { uniqueId } from "../helpers/ids";
import { onMemoryAndRedis, type Implementation as ContractImplementation } from "../helpers/contracts";
import { waitFor } from "../helpers/wait";

const BUDGET = 5;
/** The steady budget alone (no burst allowance). */
const STEADY: RateLimit = { eventsPerSec: BUDGET, burst: 0 };

/**
 * `shared`: with Redis every node takes from one budget per user. With memory each node
 * counts for itself (without Redis there is one node, so nothing to share with).
 */
type Implementation = ContractImplementation<(limit: RateLimit) => RateLimiter, { shared: boolean }>;

/** Answers of `n` calls for `user`, in order. */
async function take(limiter: RateLimiter, user: string, n: number): Promise<boolean[]> {
  const answers: boolean[] = [];
  for (let i = 0; i < n; i++) answers.push(await limiter.allow(user));
  return answers;
}

const times = (n: number, value: boolean) => Array.from({ length: n }, () => value);

function rateLimiterContract(impl: Implementation): void {
  describe(`rate limiter contract: ${impl.name}`, function () {
    this.timeout(15_000);

    it(`allows up to the budget (${BUDGET} events a second) and refuses beyond it`, async () => {
      const limiter = impl.cluster().node(STEADY);
      expect(await take(limiter, uniqueId("u"), BUDGET + 3)).to.deep.equal([...times(BUDGET, true), ...times(3, false)]);
    });

    it("a weighted event takes its cost; one costing more than the budget counts as the whole budget", async () => {
      const limiter = impl.cluster().node(STEADY);
      const user = uniqueId("u");
      expect(await limiter.allow(user, 3), "3 of 5").to.equal(true);
      expect(await limiter.allow(user, 3), "3 more than the 2 left").to.equal(false);
      const heavy = uniqueId("h");
      expect(await limiter.allow(heavy, BUDGET * 10), "far over the budget: costs the budget, and fits an idle one").to.equal(true);
      expect(await limiter.allow(heavy), "nothing left").to.equal(false);
    });

    it("concurrent calls never allow more than the budget", async () => {
      const limiter = impl.cluster().node(STEADY);
      const user = uniqueId("u");
      const answers = await Promise.all(Array.from({ length: BUDGET * 3 }, () => limiter.allow(user)));
      expect(answers.filter(Boolean)).to.have.length(BUDGET);
    });

    it("separate users have separate budgets", async () => {
      const limiter = impl.cluster().node(STEADY);
      const [a, b] = [uniqueId("a"), uniqueId("b")];
      expect(await take(limiter, a, BUDGET + 1), "a spends all").to.deep.equal([...times(BUDGET, true), false]);
      expect(await take(limiter, b, BUDGET), "b untouched").to.deep.equal(times(BUDGET, true));
    });

    it("refills: a spent budget allows again after a second", async () => {
      const limiter = impl.cluster().node(STEADY);
      const user = uniqueId("u");
      await take(limiter, user, BUDGET);
      expect(await limiter.allow(user), "spent").to.equal(false);
      const spentAt = Date.now();
      await waitFor(() => limiter.allow(user), "the budget to refill", 3000, 50);
      expect(Date.now() - spentAt, "not before the second is over").to.be.at.least(500);
    });

    it("a burst allowance is spent only once the second's budget is, and does not refill with it", async () => {
      const limiter = impl.cluster().node({ eventsPerSec: BUDGET, burst: 3 });
      const user = uniqueId("u");
      expect(await take(limiter, user, BUDGET + 5), "budget, then burst").to.deep.equal([...times(BUDGET + 3, true), false, false]);
      const spentAt = Date.now();
      await waitFor(() => limiter.allow(user), "the second's budget to refill", 3000, 50);
      expect(Date.now() - spentAt, "not before the second is over").to.be.at.least(500);
      expect(await take(limiter, user, BUDGET), "the rest of the new second, and no burst left").to.deep.equal([
        ...times(BUDGET - 1, true),
        false,
      ]);
    });

    it("a budget of 0 events a second means no limit", async () => {
      const limiter = impl.cluster().node({ eventsPerSec: 0, burst: 0 });
      expect(await take(limiter, uniqueId("u"), 200)).to.deep.equal(times(200, true));
    });

    if (impl.shared) {
      it("one budget per user across nodes: what one node allowed, another does not allow again", async () => {
        const cluster = impl.cluster();
        const [one, two] = [cluster.node(STEADY), cluster.node(STEADY)];
        const user = uniqueId("u");
        expect(await take(one, user, 3)).to.deep.equal(times(3, true));
        expect(await take(two, user, BUDGET), "the rest, on the other node").to.deep.equal([...times(BUDGET - 3, true), ...times(3, false)]);
      });
    } else {
      it("each limiter counts for itself (one node: nothing to share with)", async () => {
        const cluster = impl.cluster();
        const [one, two] = [cluster.node(STEADY), cluster.node(STEADY)];
        const user = uniqueId("u");
        expect(await take(one, user, BUDGET)).to.deep.equal(times(BUDGET, true));
        expect(await take(two, user, BUDGET)).to.deep.equal(times(BUDGET, true));
      });
    }
  });
}

onMemoryAndRedis(
  "rate limiter",
  rateLimiterContract,
  { traits: { shared: false }, cluster: () => (limit: RateLimit) => memoryRateLimiter(limit) },
  { traits: { shared: true }, cluster: (redis, prefix) => (limit: RateLimit) => redisRateLimiter(redis, limit, prefix) },
);
