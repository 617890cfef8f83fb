import { Client } from "pg";
import type { RunningTicks } from "../../src/main";
import { createTestDatabase, type TestDatabase } from "./database";
import { Device, uniqueId } from "./device";
import { startServer, urlOf } from "./server";

export type TwoNodes = {
  readonly db: TestDatabase;
  readonly nodes: RunningTicks[];
  /** A direct connection to the suite's database, to check what was stored. */
  readonly pg: Client;
  /** A device of `userId` on node `node % 2`, closed after each test. */
  device(node: number, userId: string, options?: { autoAck?: boolean }): Device;
};

/**
 * Two in-process servers on one fresh database, joined through the machine's Redis under a
 * prefix of their own. Call it inside `describe`: it registers the suite's hooks.
 */
export function useTwoNodesOnPostgres(env: Record<string, string> = {}): TwoNodes {
  let db: TestDatabase | undefined;
  let nodes: RunningTicks[] = [];
  let pg: Client | undefined;
  const devices: Device[] = [];
  before(async () => {
    db = await createTestDatabase();
    const all = { REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: uniqueId("ticks-test"), ...env };
    nodes = [await startServer(db.url, all), await startServer(db.url, all)];
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  after(async () => {
    await pg?.end();
    await Promise.all(nodes.map((n) => n.stop()));
    await db?.drop();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("useTwoNodesOnPostgres: only there once the suite's before hook ran");
    return value;
  };
  return {
    get db() {
      return ready(db);
    },
    get nodes() {
      return nodes;
    },
    get pg() {
      return ready(pg);
    },
    device(node, userId, options = {}) {
      const d = new Device(urlOf(ready(nodes[node % 2])), { userId, ...options });
      devices.push(d);
      return d;
    },
  };
}
