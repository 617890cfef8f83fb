/**
 * Memory per idle connection: open N authenticated sockets to one target (in batches, from
 * several client processes, bench/idle-clients.ts) and read the server's heap and RSS from
 * GET /metrics before and after, each time right after a forced full GC. Used by the idle
 * and idle-tokens scenarios.
 */
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { openFileLimit, ROOT, scrapeMetrics, spawnChild, type Target, closeClients } from "./procs";
import { sleep } from "./stats";

const CLIENT_TS = path.join(ROOT, "bench/idle-clients.ts");

type Memory = { heapUsed: number; rss: number };
export type IdleResult = {
  target: string;
  sockets: number;
  failed: number;
  connectSeconds: number;
  before: Memory;
  after: Memory;
  heapKbPerSocket: number;
  rssKbPerSocket: number;
  firstError: string | null;
};

async function memory(target: Target): Promise<Memory> {
  await sleep(1000);
  await target.gc();
  const m = await scrapeMetrics(target.url);
  return { heapUsed: m.get("nodejs_heap_size_used_bytes") ?? NaN, rss: m.get("process_resident_memory_bytes") ?? NaN };
}

type Ready = { opened: number; failed: number; firstError: string | null; seconds: number };

export function waitMessage<T>(child: ChildProcess, kind: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client process: no ${kind} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: { bench?: string }) => {
      if (m?.bench !== kind) return;
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`client process exited with ${code} before ${kind}`));
    };
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/** How many sockets, from how many client processes ("auto": enough to stay under the open-file limit). */
export type IdleLoad = { sockets: number; processes: number | "auto"; log: (line: string) => void };

/**
 * `clientEnv` goes to the client processes (bench/idle-clients.ts), e.g. to hand out tokens;
 * `whileOpen` runs after the memory reading, while the sockets are still open.
 */
export async function measureIdle(
  target: Target,
  load: IdleLoad,
  tag: string,
  clientEnv: Record<string, string> = {},
  whileOpen: () => Promise<void> = async () => {},
): Promise<IdleResult> {
  const n = load.sockets;
  // A client process holds one descriptor per socket; keep each well under the limit.
  const limit = openFileLimit();
  const perProcess = Math.max(100, Math.min(5000, limit - 512));
  const processes = load.processes === "auto" ? Math.max(2, Math.ceil(n / perProcess)) : load.processes;
  const share = Math.ceil(n / processes);
  const before = await memory(target);
  const children: ChildProcess[] = [];
  try {
    for (let p = 0; p < processes; p++) {
      const count = Math.min(share, n - p * share);
      if (count <= 0) break;
      children.push(
        spawnChild(
          ["--import", "tsx", CLIENT_TS],
          { IDLE_URL: target.url, IDLE_COUNT: String(count), IDLE_OFFSET: String(p * share), IDLE_BATCH: "200", IDLE_TAG: tag, ...clientEnv },
          count + 512,
        ),
      );
    }
    for (const c of children) {
      c.stdout?.resume();
      c.stderr?.on("data", (d: Buffer) => load.log(`idle client: ${d.toString().trim()}`));
    }
    const ready = await Promise.all(children.map((c) => waitMessage<Ready>(c, "idle-ready", 600_000)));
    // From the children's own clocks: their start-up (tsx) is not the server's doing.
    const connectSeconds = Math.max(...ready.map((r) => r.seconds));
    const opened = ready.reduce((s, r) => s + r.opened, 0);
    const failed = ready.reduce((s, r) => s + r.failed, 0);
    load.log(`idle ${target.name}: ${opened} sockets open (${failed} failed) in ${connectSeconds.toFixed(1)} s`);
    const after = await memory(target);
    await whileOpen();
    return {
      target: target.name,
      sockets: opened,
      failed,
      connectSeconds,
      before,
      after,
      heapKbPerSocket: (after.heapUsed - before.heapUsed) / 1024 / opened,
      rssKbPerSocket: (after.rss - before.rss) / 1024 / opened,
      firstError: ready.find((r) => r.firstError)?.firstError ?? null,
    };
  } finally {
    await closeClients(children, 15_000);
  }
}
