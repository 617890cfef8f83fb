/**
 * Memory per idle connection (lib/idleSockets.ts measures it): relay and Ticks, side by side.
 */
import { measureIdle, type IdleLoad, type IdleResult } from "../lib/idleSockets";
import { startRelayProcess, type Target } from "../lib/procs";
import { ratio } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

/** The idle load the options ask for. */
export const idleLoad = (ctx: Context): IdleLoad => ({ sockets: ctx.options.idleSockets, processes: ctx.options.idleProcesses, log: ctx.log });

export async function runIdle(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.options.idleSockets;
  const nofile = n + 1024;
  let relay: Target | null = null;
  let relayResult: IdleResult;
  try {
    relay = await startRelayProcess(nofile);
    relayResult = await measureIdle(relay, idleLoad(ctx), `${ctx.runId}r`);
  } finally {
    await relay?.stop();
  }
  let ticks: TicksUnderTest | null = null;
  let ticksResult: IdleResult;
  try {
    ticks = await startTicksOnFreshDb({}, nofile);
    ticksResult = await measureIdle(ticks.target, idleLoad(ctx), `${ctx.runId}t`);
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
