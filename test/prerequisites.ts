/**
 * Run by `npm test` before anything else (the `pretest` script): the suites need a
 * PostgreSQL and a Redis they can reach. When one is missing, say which and how to start it,
 * in one line each, and stop at once, instead of 300 tests failing inside their hooks.
 */
import Redis from "ioredis";
import { Client } from "pg";
import { ADMIN_URL } from "./helpers/database";
import { REDIS_URL } from "./helpers/redisPrefix";

const TIMEOUT_MS = 3_000;

/** Where the URL points, without a password. */
function where(url: string): string {
  const u = new URL(url);
  u.password = "";
  return u.toString();
}

async function checkPostgres(): Promise<string | undefined> {
  const client = new Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: TIMEOUT_MS });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (err) {
    const fix = unreachable(err)
      ? "start it (Debian: pg_ctlcluster <version> main start)"
      : "it must let that user in and create databases";
    return `npm test needs PostgreSQL at ${where(ADMIN_URL)} (${reason(err)}): ${fix}, or point TEST_DATABASE_ADMIN_URL at one that does.`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkRedis(): Promise<string | undefined> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // ioredis rejects with "Connection is closed."; the socket's own error says why.
  let socketError: unknown;
  redis.on("error", (err) => (socketError ??= err));
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (err) {
    const cause = socketError ?? err;
    const fix = unreachable(cause) ? "start it (redis-server --daemonize yes)" : "it must answer PING";
    return `npm test needs Redis at ${where(REDIS_URL)} (${reason(cause)}): ${fix}, or point TEST_REDIS_URL at one that does.`;
  } finally {
    redis.disconnect();
  }
}

/** A socket-level failure (ECONNREFUSED, ETIMEDOUT, …): nothing listens there. */
function unreachable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (typeof code === "string" && /^E[A-Z]+$/.test(code)) || /timeout/i.test(reason(err));
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code && /^E[A-Z]+$/.test(e.code) ? e.code : (e.message ?? String(err));
}

void Promise.all([checkPostgres(), checkRedis()]).then((problems) => {
  const missing = problems.filter((p) => p !== undefined);
  for (const line of missing) console.error(line);
  process.exit(missing.length ? 1 : 0);
});
