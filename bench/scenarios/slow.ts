/**
 * Slow consumer: a device that stops reading its TCP socket while 50,000 messages of 4 KB
 * are sent to it. The server's RSS is read from /proc before (after a warm-up flood of the
 * same shape to a device that reads, so pools and the JIT are at their plateau), at its peak
 * during the flood and after it, with MAX_SOCKET_BUFFER_BYTES at its default (1 MiB); then
 * the same flood to a device that reads (the control: what the flood itself costs), and to
 * a device that stopped reading with the cap off (0).
 */
import { readFileSync } from "node:fs";
import type { Socket } from "socket.io-client";
import type { ClientToServerEvents, ServerToClientEvents } from "../../src/protocol/events";
import { openSocket } from "../lib/load";
import { scrapeMetrics } from "../lib/procs";
import { sleep } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
const MB = 1024 * 1024;
const SENDERS = 8;
const IN_FLIGHT = 8;

export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** `total` sends of `content` to `to`, spread over the senders, `IN_FLIGHT` outstanding each. */
async function flood(senders: ClientSocket[], to: string, total: number, content: string, tag: string): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    senders.flatMap((sender) =>
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < total) {
          const i = next++;
          const reply = (await sender.timeout(60_000).emitWithAck("message:send", { clientMsgId: `${tag}:${i}`, to, content })) as {
            ok: boolean;
          };
          if (!reply.ok) failed++;
        }
      }),
    ),
  );
  return failed;
}

type SlowRun = {
  cap: number;
  messages: number;
  failedSends: number;
  seconds: number;
  rssBeforeMB: number;
  rssWarmPeakMB: number;
  rssPeakMB: number;
  rssEndMB: number;
  rssAfterGcMB: number;
  heapBeforeMB: number;
  heapAfterGcMB: number;
  slowDisconnects: number;
};

async function runOne(ctx: Context, cap: number, stopsReading: boolean): Promise<SlowRun> {
  const o = ctx.options;
  const tag = `${ctx.runId}-slow${cap}${stopsReading ? "" : "r"}`;
  const ticks = await startTicksOnFreshDb({ MAX_SOCKET_BUFFER_BYTES: String(cap) });
  const sockets: ClientSocket[] = [];
  try {
    const { url, pids } = ticks.target;
    const pid = pids[0]!;
    const auth = (userId: string) => ({ userId, deviceId: "bench" });
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => openSocket(url, auth(`s${i}-${tag}`))));
    let readerGot = 0;
    const reader = await openSocket(url, auth(`reader-${tag}`), 30_000, (s) =>
      s.on("message:new", (_m, ack) => {
        readerGot++;
        ack();
      }),
    );
    const slowId = `slow-${tag}`;
    const slow = await openSocket(url, auth(slowId), 30_000, (s) => s.on("message:new", (_m, ack) => ack()));
    sockets.push(...senders, reader, slow);
    const content = "x".repeat(4096);

    ctx.log(`slow consumer, cap ${cap}: warm-up, ${o.slowWarmup} messages to a device that reads`);
    let rssWarmPeak = 0;
    const warmSampler = setInterval(() => (rssWarmPeak = Math.max(rssWarmPeak, rssBytes(pid))), 100);
    await flood(senders, `reader-${tag}`, o.slowWarmup, content, `${tag}:w`);
    while (readerGot < o.slowWarmup) await sleep(50);
    clearInterval(warmSampler);
    await sleep(1000);
    await ticks.target.gc();
    const heapBefore = (await scrapeMetrics(url)).get("nodejs_heap_size_used_bytes") ?? NaN;
    const rssBefore = rssBytes(pid);

    // The device stops reading: its kernel buffers fill, then whatever the server keeps.
    // (The control run keeps reading: the same flood's own footprint.)
    if (stopsReading) (slow.io.engine.transport as unknown as { ws: { _socket: { pause(): void } } }).ws._socket.pause();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(pid))), 100);
    ctx.log(`slow consumer, cap ${cap}: ${o.slowMessages} messages of 4 KB to a device that ${stopsReading ? "stopped reading" : "reads"}`);
    const t0 = performance.now();
    const failedSends = await flood(senders, slowId, o.slowMessages, content, `${tag}:s`);
    const seconds = (performance.now() - t0) / 1000;
    await sleep(1000);
    clearInterval(sampler);
    rssPeak = Math.max(rssPeak, rssBytes(pid));
    const rssEnd = rssBytes(pid);
    // The live offers made before the cut wait for their receipt timeout (10 s) holding
    // their message: what is left after that is what the flood really kept.
    await sleep(11_000);
    await ticks.target.gc();
    const metrics = await scrapeMetrics(url);
    return {
      cap,
      messages: o.slowMessages,
      failedSends,
      seconds,
      rssBeforeMB: rssBefore / MB,
      rssWarmPeakMB: rssWarmPeak / MB,
      rssPeakMB: rssPeak / MB,
      rssEndMB: rssEnd / MB,
      rssAfterGcMB: rssBytes(pid) / MB,
      heapBeforeMB: heapBefore / MB,
      heapAfterGcMB: (metrics.get("nodejs_heap_size_used_bytes") ?? NaN) / MB,
      slowDisconnects: metrics.get("ticks_slow_consumer_disconnects_total") ?? 0,
    };
  } finally {
    sockets.forEach((s) => s.disconnect());
    await ticks.stop();
  }
}

export async function runSlow(ctx: Context): Promise<ScenarioResult> {
  const capped = await runOne(ctx, 1024 * 1024, true);
  const control = await runOne(ctx, 1024 * 1024, false);
  const uncapped = await runOne(ctx, 0, true);
  const runs = [capped, control, uncapped];
  const row = (label: string, pick: (r: SlowRun) => number) => ({ label, cells: runs.map(pick) });
  const section: Section = {
    title: `slow consumer: ${capped.messages} messages of 4 KB to a device that stopped reading`,
    columns: ["cap 1 MiB (default)", "control: device reads", "cap off (0)"],
    rows: [
      row("server RSS peak, warm-up flood to a reader, MB", (r) => r.rssWarmPeakMB),
      row("server RSS before (after a full GC), MB", (r) => r.rssBeforeMB),
      row("server RSS peak during the slow flood, MB", (r) => r.rssPeakMB),
      row("peak - warm-up peak, MB", (r) => r.rssPeakMB - r.rssWarmPeakMB),
      row("peak - the control's peak, MB", (r) => r.rssPeakMB - control.rssPeakMB),
      row("peak - before, MB", (r) => r.rssPeakMB - r.rssBeforeMB),
      row("server RSS 1 s after the flood, MB", (r) => r.rssEndMB),
      row("server RSS 12 s after, full GC, MB", (r) => r.rssAfterGcMB),
      row("heap used 12 s after minus before (both after GC), MB", (r) => r.heapAfterGcMB - r.heapBeforeMB),
      row("slow-consumer disconnects", (r) => r.slowDisconnects),
      row("flood seconds", (r) => r.seconds),
      row("sends refused", (r) => r.failedSends),
    ],
    notes: [
      "RSS = VmRSS of the server process, sampled every 100 ms; before = after a warm-up flood of the same shape to a device that reads, and a full GC",
      "offers made before the cut hold their message until their receipt timeout (DELIVERY_ACK_TIMEOUT_MS, 10 s): hence the reading 12 s after",
    ],
  };
  return { sections: [section], data: { capped, control, uncapped } };
}
