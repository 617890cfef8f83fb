/**
 * Soak: `--soak-minutes` (default 10) of paced traffic with connection churn against one
 * Ticks node. Devices (SDK clients, bench/soak-clients.ts in a process of its own) connect,
 * sync, send and leave; a fifth never acknowledge; a few stay throughout. Every 10 s the
 * server's event-loop lag (p99 and max since the previous sample) and RSS are read, then
 * its heap right after a forced full GC; the client process reports its own heap the same
 * way. At the end every user drains its backlog and the database is checked.
 *
 * Goals: server heap growth after the first minute ≤ 5 %, zero lost messages (every
 * acknowledged send stored, nothing left `sent` after the drain), zero INTERNAL errors;
 * the SDK's heap bounded too (same 5 % rule, reported).
 */
import path from "node:path";
import { ROOT, scrapeMetrics, spawnChild } from "../lib/procs";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, storedCounts } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

const CLIENTS_TS = path.join(ROOT, "bench/soak-clients.ts");
const MB = 1024 * 1024;
const RATE = 100; // msg/s in all: paced, well under what one node sustains on this machine

type ClientSample = {
  at: number;
  heapUsed: number;
  rss: number;
  active: number;
  sends: number;
  acked: number;
  sessions: number;
  noAckSessions: number;
  connectErrors: number;
  timeouts: number;
  duplicateReplies: number;
  received: number;
  errors: Record<string, number>;
};
type ServerSample = { t: number; heapMB: number; rssMB: number; lagP99Ms: number; lagMaxMs: number; sockets: number };

/** Growth of the last value over the first one at or after `fromS`, in %. */
function growthPct(series: { t: number; v: number }[], fromS: number): { base: number; end: number; max: number; pct: number } {
  const after = series.filter((p) => p.t >= fromS);
  const base = after[0]?.v ?? NaN;
  const end = after[after.length - 1]?.v ?? NaN;
  const max = Math.max(...after.map((p) => p.v));
  return { base, end, max, pct: ((end - base) / base) * 100 };
}

export async function runSoak(ctx: Context): Promise<ScenarioResult> {
  const seconds = Math.round(ctx.options.soakMinutes * 60);
  const ticks = await startTicksOnFreshDb();
  const server: ServerSample[] = [];
  const clients: (ClientSample & { t: number })[] = [];
  let traffic: ClientSample | null = null;
  let done: (ClientSample & { drained: number; ackedIds: string[] }) | null = null;
  try {
    let t0 = Date.now();
    const child = spawnChild(["--expose-gc", "--import", "tsx", CLIENTS_TS], {
      SOAK_URL: ticks.target.url,
      SOAK_TAG: ctx.runId,
      SOAK_SECONDS: String(seconds),
      SOAK_RATE: String(RATE),
      SOAK_PEERS: String(ctx.options.soakPeers),
      SOAK_PREFILL: String(ctx.options.soakPrefill),
    });
    child.stdout?.resume();
    child.stderr?.on("data", (d: Buffer) => ctx.log(`soak clients: ${d.toString().trim()}`));
    const finished = new Promise<void>((resolve, reject) => {
      child.on("message", (m: ClientSample & { bench?: string; drained: number; ackedIds: string[] }) => {
        if (m.bench === "soak-start") {
          // After the warm-up (--soak-prefill): the run starts now; what was sampled before is not part of it.
          t0 = m.at;
          server.length = 0;
        }
        if (m.bench === "soak-sample") clients.push({ ...m, t: (m.at - t0) / 1000 });
        if (m.bench === "soak-traffic-done") traffic = m;
        if (m.bench === "soak-done") {
          done = m;
          resolve();
        }
      });
      child.once("exit", (code) => (done ? resolve() : reject(new Error(`soak clients exited with ${code}`))));
    });
    const sampleServer = async () => {
      const live = await scrapeMetrics(ticks.target.url);
      await ticks.target.gc();
      const afterGc = await scrapeMetrics(ticks.target.url);
      server.push({
        t: (Date.now() - t0) / 1000,
        heapMB: (afterGc.get("nodejs_heap_size_used_bytes") ?? NaN) / MB,
        rssMB: (afterGc.get("process_resident_memory_bytes") ?? NaN) / MB,
        lagP99Ms: (live.get("nodejs_eventloop_lag_p99_seconds") ?? NaN) * 1000,
        lagMaxMs: (live.get("nodejs_eventloop_lag_max_seconds") ?? NaN) * 1000,
        sockets: live.get("ticks_connected_sockets") ?? NaN,
      });
      const last = server[server.length - 1]!;
      if (server.length % 6 === 0) {
        ctx.log(
          `soak ${last.t.toFixed(0)} s: heap ${last.heapMB.toFixed(1)} MB, RSS ${last.rssMB.toFixed(0)} MB, lag p99 ${last.lagP99Ms.toFixed(1)} ms, sockets ${last.sockets}`,
        );
      }
    };
    const sampler = setInterval(() => void sampleServer().catch((err) => ctx.log(`soak sample failed: ${err}`)), 10_000);
    try {
      await finished;
    } finally {
      clearInterval(sampler);
    }
  } finally {
    // Accounting needs the database; the server can go first.
    await ticks.target.stop();
  }
  const stored = await storedCounts(ticks.db.url);
  const { Client } = await import("pg");
  const pg = new Client({ connectionString: ticks.db.url });
  await pg.connect();
  const sentLeft = Number((await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE status = 'sent'")).rows[0].n);
  const ackedIds = (done as unknown as { ackedIds: string[] }).ackedIds;
  const ackedStored = Number(
    (await pg.query("SELECT count(*)::int AS n FROM messages WHERE client_msg_id = ANY($1::text[])", [ackedIds])).rows[0].n,
  );
  await pg.end();
  await ticks.probe.close().catch(() => {});
  await ticks.db.drop();

  const { ackedIds: _ids, ...end } = done as unknown as ClientSample & { drained: number; ackedIds: string[] };
  const trafficEnd = (traffic ?? end) as ClientSample;
  // Samples while traffic ran: the drain at the end is a different load.
  const during = server.filter((s) => s.t <= seconds);
  // "After the first minute"; a short run (--soak-minutes 1) starts from its first third.
  const settledS = Math.min(60, seconds / 3);
  const heap = growthPct(during.map((s) => ({ t: s.t, v: s.heapMB })), settledS);
  const rss = growthPct(during.map((s) => ({ t: s.t, v: s.rssMB })), settledS);
  const sdk = growthPct(clients.filter((c) => c.t <= seconds).map((c) => ({ t: c.t, v: c.heapUsed / MB })), settledS);
  const internal = end.errors.INTERNAL ?? 0;
  const lost = ackedIds.length - ackedStored + sentLeft;
  const lagP99 = Math.max(...during.map((s) => s.lagP99Ms));
  const lagMax = Math.max(...during.map((s) => s.lagMaxMs));
  const pass = (ok: boolean) => (ok ? "ok" : "FAILED");

  const timeline: Section = {
    title: `soak: ${ctx.options.soakMinutes} min, ${RATE} msg/s paced${ctx.options.soakPeers ? `, ${ctx.options.soakPeers} fixed peers a user (${ctx.options.soakPrefill} messages each before)` : ""}, ~100 devices churning (a fifth never ack), one node`,
    columns: ["server heap MB", "server RSS MB", "lag p99 ms", "lag max ms", "sockets", "SDK heap MB", "SDK RSS MB"],
    rows: during
      .filter((s, i) => i === 0 || Math.round(s.t) % 60 < 10 || i === during.length - 1)
      .map((s) => {
        const c = clients.reduce<(typeof clients)[number] | undefined>((best, x) => (Math.abs(x.t - s.t) < Math.abs((best?.t ?? Infinity) - s.t) ? x : best), undefined);
        return {
          label: `${s.t.toFixed(0)} s`,
          cells: [s.heapMB, s.rssMB, s.lagP99Ms, s.lagMaxMs, s.sockets, c ? c.heapUsed / MB : null, c ? c.rss / MB : null],
        };
      }),
    notes: ["heap = nodejs_heap_size_used_bytes after a forced full GC; lag = p99 and max since the previous sample (10 s), read before that sample's forced GC (the GC pause is not in it)"],
  };
  const summary: Section = {
    title: "soak: goals",
    columns: ["value", "goal", "verdict"],
    rows: [
      { label: `server heap growth after ${settledS} s, %`, cells: [heap.pct, "≤ 5", pass(heap.pct <= 5)] },
      { label: `server heap at ${settledS} s / end / max, MB`, cells: [`${heap.base.toFixed(1)} / ${heap.end.toFixed(1)} / ${heap.max.toFixed(1)}`, null, null] },
      { label: `server RSS growth after ${settledS} s, %`, cells: [rss.pct, null, null] },
      { label: `SDK process heap growth after ${settledS} s, %`, cells: [sdk.pct, "≤ 5", pass(sdk.pct <= 5)] },
      { label: `SDK heap at ${settledS} s / end / max, MB`, cells: [`${sdk.base.toFixed(1)} / ${sdk.end.toFixed(1)} / ${sdk.max.toFixed(1)}`, null, null] },
      { label: "messages acknowledged (of them stored)", cells: [`${ackedIds.length} (${ackedStored})`, null, null] },
      { label: "lost (acked not stored + left 'sent' after the drain)", cells: [lost, "0", pass(lost === 0)] },
      { label: "INTERNAL errors", cells: [internal, "0", pass(internal === 0)] },
      { label: "other error replies", cells: [JSON.stringify(end.errors), null, null] },
      { label: "sends without an answer within the SDK's 10 s", cells: [end.timeouts, "0", pass(end.timeouts === 0)] },
      { label: "event-loop lag p99, worst 10 s, ms", cells: [lagP99, null, null] },
      { label: "event-loop lag max, ms", cells: [lagMax, null, null] },
      { label: "sessions (never acking)", cells: [`${end.sessions} (${end.noAckSessions})`, null, null] },
      { label: "messages drained at the end", cells: [end.drained, null, null] },
    ],
    notes: [`${trafficEnd.sends} sends in ${seconds} s; the machine is shared: lag and absolute figures move between runs`],
  };
  return {
    sections: [timeline, summary],
    data: { seconds, rate: RATE, server, clients, heap, rss, sdk, lost, internal, sentLeft, stored, ackedStored, end },
  };
}
