/**
 * Memory per idle connection: open N authenticated sockets to one node (in batches, from
 * several client processes) and read the server's heap and RSS from GET /metrics before and
 * after, each time right after a forced full GC. Relay and Ticks, side by side.
 */
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { openFileLimit, ROOT, scrapeMetrics, spawnChild, startRelayProcess, type Target } from "../lib/procs";
import { ratio, sleep } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

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

function waitMessage<T>(child: ChildProcess, kind: string, timeoutMs: number): Promise<T> {
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

/**
 * `clientEnv` goes to the client processes (bench/idle-clients.ts), e.g. to hand out tokens;
 * `whileOpen` runs after the memory reading, while the sockets are still open.
 */
export async function measureIdle(
  target: Target,
  ctx: Context,
  tag: string,
  clientEnv: Record<string, string> = {},
  whileOpen: () => Promise<void> = async () => {},
): Promise<IdleResult> {
  const o = ctx.options;
  const n = o.idleSockets;
  // A client process holds one descriptor per socket; keep each well under the limit.
  const limit = openFileLimit();
  const perProcess = Math.max(100, Math.min(5000, limit - 512));
  const processes = o.idleProcesses === "auto" ? Math.max(2, Math.ceil(n / perProcess)) : o.idleProcesses;
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
      c.stderr?.on("data", (d: Buffer) => ctx.log(`idle client: ${d.toString().trim()}`));
    }
    const ready = await Promise.all(children.map((c) => waitMessage<Ready>(c, "idle-ready", 600_000)));
    // From the children's own clocks: their start-up (tsx) is not the server's doing.
    const connectSeconds = Math.max(...ready.map((r) => r.seconds));
    const opened = ready.reduce((s, r) => s + r.opened, 0);
    const failed = ready.reduce((s, r) => s + r.failed, 0);
    ctx.log(`idle ${target.name}: ${opened} sockets open (${failed} failed) in ${connectSeconds.toFixed(1)} s`);
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
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const gone = new Promise((r) => c.once("exit", r));
        c.send({ bench: "close" });
        const killer = setTimeout(() => c.kill("SIGKILL"), 15_000);
        await gone;
        clearTimeout(killer);
      }),
    );
  }
}

export async function runIdle(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.options.idleSockets;
  const nofile = n + 1024;
  let relay: Target | null = null;
  let relayResult: IdleResult;
  try {
    relay = await startRelayProcess(nofile);
    relayResult = await measureIdle(relay, ctx, `${ctx.runId}r`);
  } finally {
    await relay?.stop();
  }
  let ticks: TicksUnderTest | null = null;
  let ticksResult: IdleResult;
  try {
    ticks = await startTicksOnFreshDb({}, nofile);
    ticksResult = await measureIdle(ticks.target, ctx, `${ctx.runId}t`);
  } finally {
    await ticks?.stop();
  }
  const MB = 1024 * 1024;
  const r = relayResult;
  const t = ticksResult;
  const row = (label: string, a: number, b: number) => ({ label, cells: [a, b, ratio(b, a)] });
  const section: Section = {
    title: `idle sockets: ${n} authenticated WebSocket connections on one node`,
    columns: ["relay", "ticks", "ticks/relay"],
    rows: [
      { label: "sockets open and synced", cells: [r.sockets, t.sockets, null] },
      row("seconds to open them all", r.connectSeconds, t.connectSeconds),
      row("heap used before, MB", r.before.heapUsed / MB, t.before.heapUsed / MB),
      row("heap used after, MB", r.after.heapUsed / MB, t.after.heapUsed / MB),
      row("heap KB per socket", r.heapKbPerSocket, t.heapKbPerSocket),
      row("RSS before, MB", r.before.rss / MB, t.before.rss / MB),
      row("RSS after, MB", r.after.rss / MB, t.after.rss / MB),
      row("RSS KB per socket", r.rssKbPerSocket, t.rssKbPerSocket),
    ],
    notes: [
      "heap = nodejs_heap_size_used_bytes, RSS = process_resident_memory_bytes, each read after a forced full GC",
      ...[r, t].filter((x) => x.failed).map((x) => `${x.target}: ${x.failed} sockets failed (${x.firstError})`),
    ],
  };
  ctx.shared.idle = { relay: r, ticks: t };
  return { sections: [section], data: { relay: r, ticks: t } };
}
