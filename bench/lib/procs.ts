/**
 * Child processes under test (the Ticks server, the relay) and what the harness reads from
 * outside them: CPU time from /proc/<pid>/stat, Prometheus text from GET /metrics.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { sleep } from "../../test/helpers/wait";
import path from "node:path";
import {
  freePort,
  MAIN_JS,
  openFileLimit,
  ROOT,
  spawnChild as spawnTestChild,
  spawnNode,
  type NodeProcess,
} from "../../test/helpers/processes";

export { freePort, MAIN_JS, openFileLimit, ROOT };
export const RELAY_TS = path.join(ROOT, "bench/relay.ts");
const GC_PRELOAD = path.join(ROOT, "bench/gc-preload.cjs");
/**
 * Extra node flags for the Ticks server and the relay, from BENCH_NODE_ARGS (space-separated),
 * e.g. `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"`: a CPU profile of each, written
 * when it exits, to see where a message's CPU goes on either side.
 */
const EXTRA_NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);

/**
 * Synchronous clean-ups run if the harness exits early (Ctrl-C, a crash): kill the children
 * it started, by pid, and the PM2 daemons of its own PM2_HOMEs.
 */
const cleanups = new Set<() => void>();
export function atExit(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}
process.once("exit", () => {
  for (const fn of [...cleanups].reverse()) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => process.exit(130));
}

export type Target = {
  name: string;
  url: string;
  port: number;
  /** Every process whose CPU counts as the server's. */
  pids: number[];
  output: string[];
  /** The process itself (its IPC channel: bench/investigations/c100k-load.ts profiles over it). */
  child?: ChildProcess;
  /** Full GC in the server (its heap is then read without garbage). */
  gc(): Promise<void>;
  stop(): Promise<void>;
};



/** `node <args>` (the relay, idle-client processes), killed by pid if the harness exits early. */
/**
 * Asks each load-generator child still running to close its sockets and exit
 * (`{ bench: "close" }`), and kills the ones that have not after `graceMs`.
 */
export async function closeClients(children: ChildProcess[], graceMs: number): Promise<void> {
  await Promise.all(
    children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const gone = new Promise((r) => c.once("exit", r));
      c.send({ bench: "close" });
      const killer = setTimeout(() => c.kill("SIGKILL"), graceMs);
      await gone;
      clearTimeout(killer);
    }),
  );
}

export function spawnChild(args: string[], env: Record<string, string>, nofile?: number): ChildProcess {
  return killAtExit(spawnTestChild(args, env, { ipc: true, nofile }));
}

function killAtExit(child: ChildProcess): ChildProcess {
  const forget = atExit(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
  });
  child.once("exit", forget);
  return child;
}

/** Polls `url` until it answers 200. */
export async function waitHttpOk(url: string, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`process exited before ${url} answered`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.text();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await sleep(150);
  }
}

function collectOutput(child: ChildProcess): string[] {
  const output: string[] = [];
  const push = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line) continue;
      output.push(line);
      if (output.length > 500) output.shift();
    }
  };
  child.stdout?.on("data", push);
  child.stderr?.on("data", push);
  return output;
}

function managed(name: string, child: ChildProcess, port: number, output: string[]): Target {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gcSeq = 0;
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    port,
    pids: [child.pid!],
    output,
    child,
    gc: () =>
      new Promise((resolve) => {
        const id = ++gcSeq;
        const timer = setTimeout(done, 5000);
        function done() {
          clearTimeout(timer);
          child.off("message", onMessage);
          resolve();
        }
        function onMessage(m: unknown) {
          if ((m as { bench?: string; id?: number })?.bench === "gc-done" && (m as { id: number }).id === id) done();
        }
        child.on("message", onMessage);
        child.send({ bench: "gc", id });
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid!, "SIGTERM");
      const killer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      }, 15_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/**
 * `node dist/src/main.js` against `env` (DATABASE_URL, AUTH_MODE…), started as the tests
 * start theirs (spawnNode), plus a GC hook; ready when /readyz says so. `fixedPort`: the
 * port of a server it replaces (a restart), else a free one.
 */
export async function startTicksProcess(env: Record<string, string>, nofile?: number, fixedPort?: number, main?: string): Promise<Target> {
  const port = fixedPort ?? (await freePort());
  let node: NodeProcess;
  try {
    node = await spawnNode(
      { PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn", ...env },
      { timeoutMs: 60_000, nodeArgs: ["--expose-gc", ...EXTRA_NODE_ARGS, "--require", GC_PRELOAD], ipc: true, nofile, main },
    );
  } catch (err) {
    throw new Error(`ticks did not start: ${(err as Error).message}`);
  }
  killAtExit(node.child);
  return managed("ticks", node.child, node.port, node.output);
}

/** The storage-less baseline, bench/relay.ts, in its own process (on `fixedPort`: a restart). */
export async function startRelayProcess(nofile?: number, fixedPort?: number): Promise<Target> {
  const port = fixedPort ?? (await freePort());
  const child = spawnChild(["--expose-gc", ...EXTRA_NODE_ARGS, "--import", "tsx", RELAY_TS], { PORT: String(port), HOST: "127.0.0.1" }, nofile);
  const output = collectOutput(child);
  try {
    await waitHttpOk(`http://127.0.0.1:${port}/healthz`, 30_000, () => child.exitCode === null && child.signalCode === null);
  } catch (err) {
    if (child.exitCode === null) child.kill("SIGKILL");
    throw new Error(`relay did not start: ${(err as Error).message}\n${output.join("\n")}`);
  }
  return managed("relay", child, port, output);
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of one process in ms, or null if it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
  } catch {
    return null;
  }
}

/**
 * The run time of a single-threaded process (a PostgreSQL backend) in ms, from
 * /proc/<pid>/schedstat in nanoseconds, or null if it is gone: precise enough for one
 * statement of a millisecond, where cpuMs counts clock ticks. It is the main thread's only:
 * not for Node, whose GC and pool threads cpuMs counts.
 */
export function singleThreadCpuMs(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
  } catch {
    return null;
  }
}

export type CpuSnapshot = { at: number; byPid: Map<number, number> };

export function cpuSnapshot(pids: number[], read: (pid: number) => number | null = cpuMs): CpuSnapshot {
  const byPid = new Map<number, number>();
  for (const pid of pids) {
    const ms = read(pid);
    if (ms !== null) byPid.set(pid, ms);
  }
  return { at: performance.now(), byPid };
}

/** CPU ms spent between two snapshots; a pid first seen in `after` counts from zero. */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let total = 0;
  for (const [pid, ms] of after.byPid) total += ms - (before.byPid.get(pid) ?? 0);
  return total;
}

/**
 * GET /metrics, parsed: every sample under its full name (`name{labels}`), and under its bare
 * name the unlabelled sample or the first labelled one.
 */
export async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (m[2]) values.set(`${m[1]}${m[2]}`, value);
    if (!values.has(m[1]!)) values.set(m[1]!, value);
  }
  return values;
}
