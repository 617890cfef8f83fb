import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";
import { sleep } from "./wait";

export const ROOT = path.resolve(__dirname, "../..");
/** Child servers run the compiled code, as PM2 does (`npm test` builds first). */
export const MAIN_JS = path.join(ROOT, "dist/src/main.js");

export type NodeProcess = {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  output: string[];
  /** Sends a signal to this child only (by pid) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
};

/** For a failed test: the last `lines` lines each node printed, with its pid and exit code. */
export function printNodeOutput(nodes: NodeProcess[], lines = 30): void {
  for (const n of nodes) console.log(`--- node ${n.pid} (exit ${n.child.exitCode})\n${n.output.slice(-lines).join("\n")}`);
}

export type SpawnOptions = {
  /** @default 30 000 */
  timeoutMs?: number;
  /** Node flags before main.js (the benchmark: `--expose-gc` and its GC preload). */
  nodeArgs?: string[];
  /** An IPC channel to the child (the benchmark asks it for a GC over it). */
  ipc?: boolean;
  /** Open files the child may hold, raised through `sh -c 'ulimit -n'` when above the current limit. */
  nofile?: number;
  /** The compiled entry point (a benchmark comparing two builds). @default MAIN_JS */
  main?: string;
};

/** The soft limit on open files of processes started from here. */
export function openFileLimit(): number {
  try {
    const out = execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim();
    return out === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(out);
  } catch {
    return 1024;
  }
}

/**
 * Spawns `node <args>` in the repository with stdout/stderr piped (and an IPC channel if
 * asked); with `nofile` above the current limit it goes through `sh -c 'ulimit -n N; exec
 * node …'`, so the pid stays node's.
 */
export function spawnChild(args: string[], env: Record<string, string>, options: { ipc?: boolean; nofile?: number } = {}): ChildProcess {
  const stdio: ("ignore" | "pipe" | "ipc")[] = ["ignore", "pipe", "pipe", ...(options.ipc ? (["ipc"] as const) : [])];
  const spawnOptions = { cwd: ROOT, env: { ...process.env, ...env }, stdio };
  if (options.nofile && openFileLimit() < options.nofile) {
    return spawn("sh", ["-c", `ulimit -n ${options.nofile} 2>/dev/null; exec "$0" "$@"`, process.execPath, ...args], spawnOptions);
  }
  return spawn(process.execPath, args, spawnOptions);
}

/**
 * Starts one Ticks server process (tests and the benchmark alike) and resolves once it
 * listens: at its "ticks listening" log line, or, when `env` fixes a PORT (logs quieter than
 * info never print that line), once GET /readyz answers 200.
 */
export function spawnNode(env: Record<string, string>, options: SpawnOptions | number = {}): Promise<NodeProcess> {
  const { timeoutMs = 30_000, nodeArgs = [], ipc, nofile, main = MAIN_JS } = typeof options === "number" ? { timeoutMs: options } : options;
  const fixedPort = env.PORT && env.PORT !== "0" ? Number(env.PORT) : null;
  const child = spawnChild([...nodeArgs, main], { PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env }, { ipc, nofile });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`server did not start within ${timeoutMs} ms:\n${output.join("\n")}`));
    }, timeoutMs);
    function fail(err: Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    }
    function listening(port: number) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        child,
        pid: child.pid!,
        port,
        url: `http://127.0.0.1:${port}`,
        output,
        kill: (signal = "SIGTERM") => {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
          return exited;
        },
      });
    }
    let buffer = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) {
        output.push(line);
        if (output.length > 2000) output.shift();
        if (line.includes('"ticks listening"')) listening(JSON.parse(line).port as number);
      }
    });
    child.stderr!.on("data", (c: Buffer) => output.push(c.toString()));
    child.once("exit", (code) => fail(new Error(`server exited with ${code}:\n${output.join("\n")}`)));
    if (fixedPort !== null) {
      void (async () => {
        while (!settled) {
          const ok = await fetch(`http://127.0.0.1:${fixedPort}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
            (res) => res.text().then(() => res.status === 200),
            () => false,
          );
          if (ok) return listening(fixedPort);
          await sleep(150);
        }
      })();
    }
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export type RedisProcess = { port: number; url: string; pid: number; stop(): Promise<void>; start(): Promise<void> };

/**
 * A private redis-server on its own port, so a test can stop and restart Redis without
 * touching the machine's shared one. stop() kills only the pid this helper started.
 */
export async function startPrivateRedis(): Promise<RedisProcess> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const handle: RedisProcess = {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: 0,
    start: async () => {
      child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      handle.pid = child.pid!;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("redis-server did not start")), 10_000);
        child!.stdout!.on("data", (c: Buffer) => {
          if (c.toString().includes("Ready to accept connections")) {
            clearTimeout(timer);
            resolve();
          }
        });
        child!.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
      });
    },
    stop: async () => {
      const c = child;
      child = null;
      if (!c || c.exitCode !== null) return;
      const gone = new Promise((r) => c.once("exit", r));
      process.kill(c.pid!, "SIGKILL");
      await gone;
    },
  };
  await handle.start();
  return handle;
}
