import { expect } from "chai";
import { ConfigError, loadConfig } from "../src/config";

/** The settings of docs/scaling.md, read by loadConfig: defaults, and bad values refused by name. */
describe("config: Redis Cluster seeds and the PostgreSQL pool", () => {
  const base = { AUTH_MODE: "dev", DATABASE_URL: "postgres://u@db/ticks" };
  const refused = (env: Record<string, string>, variable: string) =>
    expect(() => loadConfig({ ...base, ...env }), JSON.stringify(env)).to.throw(ConfigError, new RegExp(`${variable}: `));

  it("reads REDIS_CLUSTER_NODES as seeds, with the classic adapter", () => {
    const config = loadConfig({ ...base, REDIS_CLUSTER_NODES: "redis-1:6379, 10.0.0.2:7000,[::1]:7001", REDIS_PREFIX: "p" });
    expect(config.redis).to.deep.equal({
      target: {
        kind: "cluster",
        nodes: [
          { host: "redis-1", port: 6379 },
          { host: "10.0.0.2", port: 7000 },
          { host: "::1", port: 7001 },
        ],
      },
      adapter: "classic",
      prefix: "p",
    });
    expect(loadConfig({ ...base, REDIS_URL: "redis://r:6379" }).redis).to.deep.include({ target: { kind: "single", url: "redis://r:6379" }, adapter: "sharded" });
  });

  it("refuses malformed seeds, REDIS_URL with it, and the sharded adapter with it", () => {
    for (const bad of ["redis-1", ":6379", "redis-1:", "redis-1:0", "redis-1:65536", "a,b:1", "redis-1:6379,", "http://r:1"]) {
      refused({ REDIS_CLUSTER_NODES: bad }, "REDIS_CLUSTER_NODES");
    }
    refused({ REDIS_CLUSTER_NODES: "r:1", REDIS_URL: "redis://r:6379" }, "REDIS_CLUSTER_NODES");
    refused({ REDIS_CLUSTER_NODES: "r:1", REDIS_ADAPTER: "sharded" }, "REDIS_ADAPTER");
  });

  it("sizes the pool and the timeout of PostgreSQL, and refuses nonsense", () => {
    expect(loadConfig(base).database).to.deep.equal({ kind: "postgres", url: "postgres://u@db/ticks", poolMax: 10, timeoutMs: 5000 });
    expect(loadConfig({ ...base, DATABASE_POOL_MAX: "3", DATABASE_TIMEOUT_MS: "2000" }).database).to.deep.include({ poolMax: 3, timeoutMs: 2000 });
    for (const bad of ["0", "-1", "2.5", "many", "1001"]) refused({ DATABASE_POOL_MAX: bad }, "DATABASE_POOL_MAX");
    for (const bad of ["0", "99", "soon"]) refused({ DATABASE_TIMEOUT_MS: bad }, "DATABASE_TIMEOUT_MS");
  });

  it("reads APPEND_LANES (2 by default, 1 on PGlite), and refuses nonsense", () => {
    expect(loadConfig(base).appendLanes).to.equal(2);
    expect(loadConfig({ ...base, APPEND_LANES: "4" }).appendLanes).to.equal(4);
    expect(loadConfig({ AUTH_MODE: "dev", APPEND_LANES: "4" }).appendLanes, "PGlite: one connection").to.equal(1);
    for (const bad of ["0", "-1", "1.5", "65", "lots"]) refused({ APPEND_LANES: bad }, "APPEND_LANES");
  });
});
