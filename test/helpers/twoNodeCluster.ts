import { Client } from "pg";
import { createTestDatabase, type TestDatabase } from "./database";
import { LogWatch } from "./logWatch";
import { spawnNode, startPrivateRedis, type NodeProcess, type RedisProcess } from "./processes";
import { startRedisCluster, type RedisClusterProcess } from "./redisCluster";

export type TwoNodeCluster = {
  readonly db: TestDatabase;
  /** Private to the suite, so a case may stop and restart it without touching the machine's Redis. */
  readonly redis: RedisProcess;
  /** With `{ redis: "cluster" }`: a Redis Cluster of the suite's own (3 masters, 3 replicas) instead. */
  readonly redisCluster: RedisClusterProcess;
  /** A connection of the test's own, for the final accounting against what was stored. */
  readonly pg: Client;
  readonly nodes: NodeProcess[];
  readonly urls: string[];
  /** Closed at the end, before the nodes go: whatever a case opened against the nodes. */
  readonly clients: { close(): void }[];
};

/**
 * Server timeouts of the flood cases: a few seconds instead of the defaults (tens of
 * seconds), so a dead node's presence and leader lease expire, and unconfirmed messages are
 * offered again, well within the minute a case gives its flood to settle.
 */
export const FLOOD_TIMEOUTS = {
  REDELIVERY_AFTER_MS: "2000",
  DELIVERY_ACK_TIMEOUT_MS: "3000",
  PRESENCE_TTL_MS: "3000",
  LEADER_LEASE_MS: "2000",
};

/**
 * The fixture of the fault cases that run two server processes: a fresh database, a private
 * Redis, two nodes on both (started together, as under PM2) and a
 * LogWatch per node whose summary is printed at the end as evidence for the report.
 * `settings` is the case's own server environment, on top of dev auth and no rate limit
 * (a flood is a burst on purpose). Call it inside `describe`; it registers before/after
 * there. Teardown swallows errors: the verdict is the case's assertions, and one failed
 * step must not leave the next (a node, Redis, the database) behind.
 */
export function useTwoNodeCluster(settings: Record<string, string>, options: { redis?: "single" | "cluster" } = {}): TwoNodeCluster {
  let db: TestDatabase | undefined;
  let redis: RedisProcess | undefined;
  let redisCluster: RedisClusterProcess | undefined;
  let pg: Client | undefined;
  let nodes: NodeProcess[] = [];
  let watches: LogWatch[] = [];
  const clients: { close(): void }[] = [];
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useTwoNodeCluster: ${what} is only there once the suite's before hook ran`);
    return value;
  };

  before(async () => {
    db = await createTestDatabase();
    let redisEnv: Record<string, string>;
    if (options.redis === "cluster") {
      redisCluster = await startRedisCluster();
      redisEnv = { REDIS_CLUSTER_NODES: redisCluster.seeds };
    } else {
      redis = await startPrivateRedis();
      redisEnv = { REDIS_URL: redis.url };
    }
    pg = new Client({ connectionString: db.url });
    await pg.connect();
    const env = {
      DATABASE_URL: db.url,
      ...redisEnv,
      AUTH_MODE: "dev",
      RATE_LIMIT_EVENTS_PER_SEC: "0",
      ...settings,
    };
    nodes = await Promise.all([spawnNode(env), spawnNode(env)]);
    watches = nodes.map((n) => new LogWatch(n));
  });

  after(async () => {
    clients.splice(0).forEach((c) => c.close());
    for (const w of watches) console.log(`      ${w.summary()}`);
    await Promise.allSettled(nodes.map((n) => n.kill("SIGKILL")));
    await pg?.end().catch(() => {});
    await redis?.stop().catch(() => {});
    await redisCluster?.stop().catch(() => {});
    await db?.drop().catch((err) => console.log(`could not drop ${db?.name}: ${err}`));
  });

  return {
    get db() {
      return ready(db, "db");
    },
    get redis() {
      return ready(redis, "redis");
    },
    get redisCluster() {
      return ready(redisCluster, "redisCluster");
    },
    get pg() {
      return ready(pg, "pg");
    },
    get nodes() {
      return nodes;
    },
    get urls() {
      return nodes.map((n) => n.url);
    },
    clients,
  };
}
