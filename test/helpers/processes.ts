import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";

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

/** Starts one Ticks server process and resolves once it listens. */
export function spawnNode(env: Record<string, string>, timeoutMs = 30_000): Promise<NodeProcess> {
  const child = spawn(process.execPath, [MAIN_JS], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start:\n${output.join("\n")}`));
    }, timeoutMs);
    let buffer = "";
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) {
        output.push(line);
        if (output.length > 2000) output.shift();
        if (!line.includes('"ticks listening"')) continue;
        clearTimeout(timer);
        const port = JSON.parse(line).port as number;
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
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => output.push(c.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output.join("\n")}`));
    });
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
