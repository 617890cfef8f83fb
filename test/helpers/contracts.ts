import type { RedisClient } from "../../src/cluster/redis";
import { uniqueId } from "./ids";
import { useRedisCluster } from "./redisCluster";
import { useRedisPrefix } from "./redisPrefix";

/**
 * One cluster as a contract suite sees it: `node` gives one of its nodes' implementation.
 * With memory a cluster is one node (or, for the rate limiter, nodes that share nothing),
 * so what "another node" means is the memory factory's choice.
 */
export type ContractCluster<Node> = { node: Node };
export type Implementation<Node, Traits> = Traits & { name: string; cluster(): ContractCluster<Node> };

/**
 * Runs `contract` three times: on the memory implementation, on Redis (the machine's) with a
 * key prefix of its own, fresh for every cluster so no case sees another's keys, and on a
 * Redis Cluster of the suite's own (3 masters, 3 replicas), where a multi-key command or
 * script whose keys are not in one hash slot fails with CROSSSLOT. `traits`
 * say where the two legitimately differ; the contract reads them to pick its cases.
 */
export function onMemoryAndRedis<Node, Traits>(
  name: string,
  contract: (impl: Implementation<Node, Traits>) => void,
  memory: { traits: Traits; cluster: () => Node },
  redis: { traits: Traits; cluster: (client: RedisClient, prefix: string) => Node },
): void {
  contract({ ...memory.traits, name: "memory", cluster: () => ({ node: memory.cluster() }) });
  describe(`${name} (Redis, fresh prefix)`, () => {
    const shared = useRedisPrefix(name.replace(/\W+/g, "-"));
    contract({ ...redis.traits, name: "Redis", cluster: () => ({ node: redis.cluster(shared.redis, uniqueId(shared.prefix)) }) });
  });
  describe(`${name} (Redis Cluster)`, () => {
    const redisCluster = useRedisCluster();
    contract({ ...redis.traits, name: "Redis Cluster", cluster: () => ({ node: redis.cluster(redisCluster.client, uniqueId(`test-${name.replace(/\W+/g, "-")}`)) }) });
  });
}
