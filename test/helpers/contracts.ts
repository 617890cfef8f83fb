import type Redis from "ioredis";
import { uniqueId } from "./ids";
import { useRedisPrefix } from "./redisPrefix";

/**
 * One cluster as a contract suite sees it: `node` gives one of its nodes' implementation.
 * With memory a cluster is one node (or, for the rate limiter, nodes that share nothing),
 * so what "another node" means is the memory factory's choice.
 */
export type ContractCluster<Node> = { node: Node };
export type Implementation<Node, Traits> = Traits & { name: string; cluster(): ContractCluster<Node> };

/**
 * Runs `contract` twice: on the memory implementation, and on Redis (the machine's) with a
 * key prefix of its own, fresh for every cluster so no case sees another's keys. `traits`
 * say where the two legitimately differ; the contract reads them to pick its cases.
 */
export function onMemoryAndRedis<Node, Traits>(
  name: string,
  contract: (impl: Implementation<Node, Traits>) => void,
  memory: { traits: Traits; cluster: () => Node },
  redis: { traits: Traits; cluster: (client: Redis, prefix: string) => Node },
): void {
  contract({ ...memory.traits, name: "memory", cluster: () => ({ node: memory.cluster() }) });
  describe(`${name} (Redis, fresh prefix)`, () => {
    const shared = useRedisPrefix(name.replace(/\W+/g, "-"));
    contract({ ...redis.traits, name: "Redis", cluster: () => ({ node: redis.cluster(shared.redis, uniqueId(shared.prefix)) }) });
  });
}
