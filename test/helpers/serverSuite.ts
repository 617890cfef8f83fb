import { Client } from "pg";
import type { RunningTicks } from "../../src/main";
import { createTestDatabase, type TestDatabase } from "./database";
import { Device, type DeviceOptions } from "./device";
import { startServer, urlOf } from "./server";

export type ServerSuite = {
  readonly db: TestDatabase;
  readonly server: RunningTicks;
  /** A connection of the test's own, to check what the server committed. */
  readonly pg: Client;
  /** A new, not yet connected device on the suite's server, closed after the test. */
  device(userId: string, options?: Omit<DeviceOptions, "userId">): Device;
  /** The same, closed only at the end of the suite: for devices a `before` hook sets up for every test. */
  suiteDevice(userId: string, options?: Omit<DeviceOptions, "userId">): Device;
};

/**
 * The fixture most in-process suites share: one fresh database and one server on it for the
 * whole `describe`, devices closed after every test (so no test sees another's sockets), and
 * everything stopped and dropped at the end. Call it inside `describe`; it registers the
 * hooks there. The properties can only be read once `before` has run, i.e. inside a test.
 */
export function useServerSuite(env: Record<string, string> = {}): ServerSuite {
  let db: TestDatabase | undefined;
  let server: RunningTicks | undefined;
  let pg: Client | undefined;
  const devices: Device[] = [];
  const suiteDevices: Device[] = [];
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useServerSuite: ${what} is only there once the suite's before hook ran`);
    return value;
  };

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url, env);
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  after(async () => {
    suiteDevices.splice(0).forEach((d) => d.close());
    await pg?.end();
    await server?.stop();
    await db?.drop();
  });

  return {
    get db() {
      return ready(db, "db");
    },
    get server() {
      return ready(server, "server");
    },
    get pg() {
      return ready(pg, "pg");
    },
    device(userId, options = {}) {
      const d = new Device(urlOf(ready(server, "server")), { userId, ...options });
      devices.push(d);
      return d;
    },
    suiteDevice(userId, options = {}) {
      const d = new Device(urlOf(ready(server, "server")), { userId, ...options });
      suiteDevices.push(d);
      return d;
    },
  };
}
