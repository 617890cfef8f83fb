import { SignJWT } from "jose";
import { loadConfig, type Config } from "../../src/config";
import { createLogger } from "../../src/log";
import { startTicks, type RunningTicks } from "../../src/main";
import type { Clock } from "../../src/clock";

export const TEST_SECRET = "test-secret-that-is-at-least-32-chars-long";

/**
 * The server's configuration as an operator would give it, plus test defaults. Tests fire
 * bursts on purpose, so the rate limit is off unless a test sets it (test/rate-limit.test.ts).
 */
export function testConfig(env: Record<string, string | undefined>): Config {
  return loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    RATE_LIMIT_EVENTS_PER_SEC: "0",
    ...env,
  });
}

/** A real server on a random port against `databaseUrl`. */
export function startServer(
  databaseUrl: string,
  env: Record<string, string | undefined> = {},
  clock?: Clock,
): Promise<RunningTicks> {
  const config = testConfig({ DATABASE_URL: databaseUrl, AUTH_MODE: "dev", ...env });
  return startTicks(config, { clock, log: createLogger(config.logLevel) });
}

export const urlOf = (server: { port: number }) => `http://127.0.0.1:${server.port}`;

export function mintToken(sub: string, options: { secret?: string; expiresIn?: string; alg?: string } = {}) {
  return new SignJWT({})
    .setProtectedHeader({ alg: options.alg ?? "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "1h")
    .sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  private offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}
