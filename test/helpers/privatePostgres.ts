import { execFile } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./processes";

const run = promisify(execFile);

/** Where Debian/Ubuntu put the PostgreSQL 15 server binaries. */
export const PG_BIN = process.env.TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export type PrivatePostgres = {
  port: number;
  /** postgres://postgres@127.0.0.1:{port}/postgres */
  adminUrl: string;
  dir: string;
  /** `pg_ctl -m immediate stop`: a crash, as far as clients can tell. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the cluster (if running) and deletes its directory. Idempotent. */
  destroy(): Promise<void>;
  running: boolean;
};

/** Runs a PostgreSQL binary as the `postgres` OS user (initdb and pg_ctl refuse root). */
async function asPostgres(bin: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const isRoot = process.getuid?.() === 0;
  const [cmd, argv] = isRoot ? ["runuser", ["-u", "postgres", "--", path.join(PG_BIN, bin), ...args]] : [path.join(PG_BIN, bin), args];
  const { stdout, stderr } = await run(cmd as string, argv as string[], { timeout: timeoutMs });
  return `${stdout}${stderr}`;
}

async function idOf(flag: "-u" | "-g"): Promise<number> {
  const { stdout } = await run("id", [flag, "postgres"]);
  return Number(stdout.trim());
}

/**
 * A throwaway PostgreSQL cluster of its own (initdb into a temp dir, own port, own socket
 * dir), so a test can stop the database without touching the machine's shared server.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  // Short path: the Unix socket path (dir + ".s.PGSQL.port") must stay under 107 bytes.
  const dir = mkdtempSync("/tmp/ticks-pg-");
  const data = path.join(dir, "data");
  const port = await freePort();
  if (process.getuid?.() === 0) chownSync(dir, await idOf("-u"), await idOf("-g"));
  const handle: PrivatePostgres = {
    port,
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dir,
    running: false,
    start: async () => {
      await asPostgres("pg_ctl", [
        "-D",
        data,
        "-l",
        path.join(dir, "server.log"),
        "-o",
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100`,
        "-w",
        "-t",
        "60",
        "start",
      ]);
      handle.running = true;
    },
    stop: async () => {
      await asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      handle.running = false;
    },
    destroy: async () => {
      if (handle.running) await handle.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    await handle.start();
  } catch (err) {
    await handle.destroy();
    throw err;
  }
  return handle;
}
