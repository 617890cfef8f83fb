/**
 * The group-creation flood of issue 19: one user loops `group:create` with 255 members
 * while another user sends direct messages one at a time; what the flood does to the
 * victim's send acknowledgements, and how many groups (membership rows) it gets through.
 *
 *   npm run bench -- --scenarios group-flood
 *
 * One Ticks process on a fresh database per run, with the default rate limit (100 events/s,
 * burst 500) and GROUP_CREATE_PER_HOUR as the environment gives it (default 50): the
 * flooder one request at a time (the loop), then 8 in flight, then 8 in flight with
 * the hourly cap off, so each protection's share shows. Not in the default run.
 */
import { Client } from "pg";
import { devAuth, openSocket } from "../lib/load";
import { round, sleep, summarize } from "../lib/stats";
import type { Row, Section } from "../lib/table";
import { startTicksOnFreshDb } from "../lib/ticks";
import type { ClientSocket } from "../../test/helpers/socket";
import type { Context, ScenarioResult } from "./context";

const FLOOD_S = 8;
const MEMBERS = 255;

type Run = {
  label: string;
  quiet: { p50: number | null; p99: number | null };
  flood: { p50: number | null; p99: number | null };
  created: number;
  limited: number;
  membershipRows: number;
};

/**
 * The victim: one direct message at a time, each waiting for its ack, one every 50 ms at
 * most (a lively chat, well inside the victim's own budget), for `seconds`.
 */
async function victimSends(victim: ClientSocket, peer: string, seconds: number, tag: string): Promise<number[]> {
  const until = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  let i = 0;
  while (performance.now() < until) {
    const t0 = performance.now();
    const reply = await victim.timeout(30_000).emitWithAck("message:send", { clientMsgId: `${tag}-${++i}`, to: peer, content: "hello" });
    if (!reply.ok) throw new Error(`victim send refused: ${reply.error.code}`);
    const ms = performance.now() - t0;
    latencies.push(ms);
    if (ms < 50) await sleep(50 - ms);
  }
  return latencies;
}

async function floodRun(ctx: Context, label: string, env: Record<string, string>, inFlight: number): Promise<Run> {
  const ticks = await startTicksOnFreshDb({ RATE_LIMIT_EVENTS_PER_SEC: "100", RATE_LIMIT_BURST: "500", ...env });
  const tag = `gf-${ctx.runId}-${label.replace(/\W+/g, "")}`;
  const sockets: ClientSocket[] = [];
  try {
    const open = async (userId: string) => {
      const s = await openSocket(ticks.target.url, devAuth(userId) as Record<string, unknown>);
      sockets.push(s);
      return s;
    };
    const victim = await open(`${tag}-victim`);
    await open(`${tag}-peer`);
    const flooder = await open(`${tag}-flooder`);
    const quiet = summarize(await victimSends(victim, `${tag}-peer`, 4, `${tag}-q`));
    let created = 0;
    let limited = 0;
    let n = 0;
    const until = performance.now() + FLOOD_S * 1000;
    const flood = Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < until) {
          const members = Array.from({ length: MEMBERS }, (_, i) => `${tag}-u${n}-${i}`);
          n++;
          const reply = await flooder.timeout(30_000).emitWithAck("group:create", { title: "flood", members });
          if (reply.ok) created++;
          else if (reply.error.code === "RATE_LIMITED") limited++;
          else throw new Error(`flood: ${reply.error.code} ${reply.error.message}`);
        }
      }),
    );
    const during = summarize(await victimSends(victim, `${tag}-peer`, FLOOD_S, `${tag}-f`));
    await flood;
    const pg = new Client({ connectionString: ticks.db.url });
    await pg.connect();
    const { rows } = await pg
      .query<{ n: string }>("SELECT count(*) AS n FROM conversation_members cm JOIN conversations c USING (conversation_id) WHERE c.kind = 'group'")
      .finally(() => pg.end());
    const run: Run = {
      label,
      quiet: { p50: round(quiet.p50), p99: round(quiet.p99) },
      flood: { p50: round(during.p50), p99: round(during.p99) },
      created,
      limited,
      membershipRows: Number(rows[0]!.n),
    };
    ctx.log(`group-flood: ${label}: ${JSON.stringify(run)}`);
    return run;
  } finally {
    for (const s of sockets) s.disconnect();
    await ticks.stop();
  }
}

export async function runGroupFlood(ctx: Context): Promise<ScenarioResult> {
  const cap = process.env.GROUP_CREATE_PER_HOUR ?? "50";
  const runs = [
    await floodRun(ctx, `one at a time, GROUP_CREATE_PER_HOUR=${cap}`, { GROUP_CREATE_PER_HOUR: cap }, 1),
    await floodRun(ctx, `8 in flight, GROUP_CREATE_PER_HOUR=${cap}`, { GROUP_CREATE_PER_HOUR: cap }, 8),
    await floodRun(ctx, "8 in flight, hourly cap off", { GROUP_CREATE_PER_HOUR: "0" }, 8),
  ];
  const rows: Row[] = runs.map((r) => ({
    label: r.label,
    cells: [r.quiet.p50, r.quiet.p99, r.flood.p50, r.flood.p99, r.created, r.limited, r.membershipRows],
  }));
  const section: Section = {
    title: `group-flood: one user loops group:create with ${MEMBERS} members for ${FLOOD_S} s while another sends one direct message at a time (at most 20/s)`,
    columns: ["quiet p50 ms", "quiet p99 ms", "flood p50 ms", "flood p99 ms", "groups", "RATE_LIMITED", "member rows"],
    rows,
    notes: ["default rate limit (100 events/s, burst 500); group:create costs one event per 8 members"],
  };
  return { sections: [section], data: { runs } };
}
