/**
 * What watching token expiry costs on real idle sockets: the idle-sockets measurement twice
 * against Ticks with JWT_SECRET, once with tokens that have no `exp` (nothing is tracked) and
 * once with tokens that expire in two hours (every socket has a deadline on the shared
 * queue), each on a fresh server. The difference in heap per socket is the tracking's cost.
 */
import { randomBytes } from "node:crypto";
import { scrapeMetrics } from "../lib/procs";
import { ratio } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";
import { measureIdle, type IdleResult } from "../lib/idleSockets";
import { idleLoad } from "./idle";

async function run(ctx: Context, tag: string, ttlS: string | null): Promise<IdleResult & { deadlines: number }> {
  const secret = randomBytes(32).toString("hex");
  let ticks: TicksUnderTest | null = null;
  try {
    ticks = await startTicksOnFreshDb({ AUTH_MODE: "jwt", JWT_SECRET: secret }, ctx.options.idleSockets + 1024);
    const clientEnv: Record<string, string> = { IDLE_TOKEN_SECRET: secret, ...(ttlS ? { IDLE_TOKEN_TTL_S: ttlS } : {}) };
    let deadlines = NaN;
    const target = ticks.target;
    const result = await measureIdle(target, idleLoad(ctx), tag, clientEnv, async () => {
      deadlines = (await scrapeMetrics(target.url)).get("ticks_token_deadlines") ?? NaN;
    });
    return { ...result, deadlines };
  } finally {
    await ticks?.stop();
  }
}

export async function runIdleTokens(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.options.idleSockets;
  const none = await run(ctx, `${ctx.runId}n`, null);
  const timed = await run(ctx, `${ctx.runId}e`, String(2 * 3600));
  const KB = 1024;
  const row = (label: string, a: number, b: number) => ({ label, cells: [a, b, ratio(b, a)] });
  const section: Section = {
    title: `idle sockets with tokens: ${n} JWT sockets, tokens without exp vs expiring in 2 h`,
    columns: ["no exp", "exp in 2 h", "exp/no exp"],
    rows: [
      { label: "sockets open and synced", cells: [none.sockets, timed.sockets, null] },
      { label: "token deadlines watched", cells: [none.deadlines, timed.deadlines, null] },
      row("seconds to open them all", none.connectSeconds, timed.connectSeconds),
      row("heap KB per socket", none.heapKbPerSocket, timed.heapKbPerSocket),
      row("RSS KB per socket", none.rssKbPerSocket, timed.rssKbPerSocket),
      row("heap used after, MB", none.after.heapUsed / KB / KB, timed.after.heapUsed / KB / KB),
    ],
    notes: [
      "each column on its own fresh server; heap read after a forced full GC (nodejs_heap_size_used_bytes)",
      ...[none, timed].filter((x) => x.failed).map((x) => `${x.failed} sockets failed (${x.firstError})`),
    ],
  };
  return { sections: [section], data: { noExp: none, exp2h: timed } };
}
