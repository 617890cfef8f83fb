/**
 * Composition root: config → database (migrated) → store → cluster parts → app → listen;
 * SIGINT/SIGTERM → close in order. Also what tests call to run a real server.
 */
import { systemClock, type Clock } from "./clock";
import { ConfigError, loadConfig, type Config } from "./config";
import { createApp, type TicksApp } from "./app";
import { createCluster } from "./cluster";
import { createLogger, type Logger } from "./log";
import { Metrics } from "./metrics";
import { createDatabase, createHotPathDatabase, migrateToLatest, type Database } from "./storage/database";
import { SqlMessageStore } from "./storage/SqlMessageStore";
import { SqlGroupStore } from "./storage/SqlGroupStore";
import { SqlPushStore } from "./storage/SqlPushStore";
import { createMediaParts } from "./media/createMedia";
import { SqlStatusStream } from "./storage/SqlStatusStream";

export type RunningTicks = TicksApp & { port: number; db: Database; stop(): Promise<void> };

export async function startTicks(config: Config, options: { log?: Logger; clock?: Clock } = {}): Promise<RunningTicks> {
  const log = options.log ?? createLogger(config.logLevel);
  const db = createDatabase(config.database, log);
  // A migration may run long on a big database: its own pool, without DATABASE_TIMEOUT_MS.
  const migrator = config.database.kind === "postgres" ? createDatabase({ ...config.database, timeoutMs: undefined }, log) : db;
  try {
    await migrateToLatest(migrator, config.database.kind);
  } catch (err) {
    await db.destroy();
    throw err;
  } finally {
    if (migrator !== db) await migrator.destroy();
  }
  let cluster;
  try {
    cluster = await createCluster(config, log);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  const metrics = new Metrics();
  const hotPath = createHotPathDatabase(config.database, db, config.appendLanes, log);
  const store = new SqlMessageStore(db, {
    hotPath,
    appendLanes: config.appendLanes,
    onBatch: (kind, size) => metrics.writeBatchSize.observe({ kind }, size),
    ...(config.push ? { pushDelayMs: config.push.delayMs } : {}),
  });
  const pushStore = new SqlPushStore(db);
  const statusStore = new SqlStatusStream(db, hotPath);
  let cursorKey: Uint8Array;
  let media;
  try {
    cursorKey = await statusStore.cursorKey();
    media = await createMediaParts(config.media, db);
  } catch (err) {
    await cluster.close();
    if (hotPath !== db) await hotPath.destroy();
    await db.destroy();
    throw err;
  }
  const app = createApp({
    config,
    store,
    groupStore: new SqlGroupStore(db),
    pushStore,
    statusStore,
    cursorKey,
    log,
    clock: options.clock ?? systemClock,
    cluster,
    metrics,
    media,
  });
  const port = await app.listen(config.port, config.host);
  let stopped: Promise<void> | undefined;
  // Ordered: sockets and in-flight events first, then Redis, then the database.
  const stop = () =>
    (stopped ??= (async () => {
      await app.close();
      await cluster.close();
      media.close();
      if (hotPath !== db) await hotPath.destroy();
      await db.destroy();
    })());
  return { ...app, port, db, stop };
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    process.exit(78); // EX_CONFIG
  }
  const log = createLogger(config.logLevel);
  // A last line of defence: a stray rejection in a library (seen with Redis outages) must
  // not take every connection of this node down with it.
  process.on("unhandledRejection", (err) => log.error({ err }, "unhandled rejection"));
  if (config.auth.mode === "dev") {
    log.warn(
      "AUTH_MODE=dev: handshakes are trusted (auth.userId), anyone can act as anyone. Set JWT_JWKS_URL, JWT_PUBLIC_KEY or JWT_SECRET for real use.",
    );
  } else if ("jwks" in config.auth) {
    if (config.auth.issuer === undefined) {
      log.warn("JWT_JWKS_URL without JWT_ISSUER: any iss is accepted from that key set; set JWT_ISSUER (docs/auth.md)");
    }
    if (config.auth.jwks.url.toLowerCase().startsWith("http:")) {
      log.warn("JWT_JWKS_URL is plain http: whoever can alter that traffic can substitute keys; use https outside a trusted network");
    }
  }
  if (config.database.kind === "pglite") {
    log.info({ dataDir: config.database.dataDir }, "no DATABASE_URL: using the embedded PGlite database (one process only)");
  }
  const ticks = await startTicks(config, { log });
  log.info({ port: ticks.port }, "ticks listening");
  // PM2 (wait_ready) routes traffic here only after this.
  process.send?.("ready");

  const shutdown = (signal: string) => {
    log.info({ signal }, "shutting down");
    ticks.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
}

if (require.main === module) {
  main().catch((err) => {
    console.error("ticks failed to start:", err);
    process.exit(1);
  });
}
