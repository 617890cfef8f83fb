/**
 * C100k: 100,000 concurrent sockets on one server process (`--c100k-sockets`), relay and
 * Ticks in turn, each through the same steps (bench/lib/c100k.ts): connect them all, read
 * heap and RSS per socket, 1,000 msg/s across them (ack p50/p99, event-loop lag), then a
 * restart on the same port with every socket reconnecting at once (time until all are
 * synced again, /readyz meanwhile). Ticks runs with its default rate limit and outgoing
 * buffer cap, and while its sockets are open a flood from one user and a device that stops
 * reading check that both still hold under this load. Not in the default run:
 *
 *   npm run bench -- --c100k                        # 100,000 sockets: about 15 minutes
 *   npm run bench -- --c100k --c100k-sockets 20000  # smaller
 */
import { execFileSync } from "node:child_process";
import { clientSocket, connectSocket, type ClientSocket } from "../../test/helpers/socket";
import { runC100k, type C100kOptions, type C100kResult } from "../lib/c100k";
import { scrapeMetrics, startRelayProcess, startTicksProcess, type Target } from "../lib/procs";
import { ratio, sleep } from "../lib/stats";
import type { Section } from "../lib/table";
import { BENCH_ENV, startTicksOnFreshDb } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

/** Ticks as deployed: the default rate limit and buffer cap (the bench's other scenarios turn the limit off). */
const C100K_ENV = { RATE_LIMIT_EVENTS_PER_SEC: "100", RATE_LIMIT_BURST: "500", MAX_SOCKET_BUFFER_BYTES: String(1024 * 1024) };

const options = (ctx: Context): C100kOptions => ({
  sockets: ctx.options.c100kSockets,
  processes: ctx.options.c100kProcesses,
  addresses: ctx.options.c100kAddresses,
  batch: 100,
  rate: ctx.options.c100kRate,
  loadSeconds: ctx.options.c100kLoadSeconds,
  log: ctx.log,
});

async function open(url: string, userId: string): Promise<ClientSocket> {
  const socket = clientSocket(url, { userId, deviceId: "check" });
  socket.on("message:backlog", (_page, ack) => ack());
  return connectSocket(socket, { until: "sync:complete", timeoutMs: 60_000 });
}

/** One user sends 2,000 events at once: how many are refused RATE_LIMITED. */
async function floodCheck(url: string, tag: string): Promise<string> {
  const flooder = await open(url, `c100k-flood-${tag}`);
  try {
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        flooder.timeout(60_000).emitWithAck("message:send", { to: `c100k-${tag}-0`, clientMsgId: `flood-${tag}-${i}`, content: "x" }),
      ),
    );
    const limited = replies.filter((r) => !r.ok && r.error.code === "RATE_LIMITED").length;
    return `${limited} of 2000 RATE_LIMITED, ${replies.filter((r) => r.ok).length} stored`;
  } finally {
    flooder.disconnect();
  }
}

/** A device stops reading while 4 users send it 4 KB messages: is it cut at MAX_SOCKET_BUFFER_BYTES? */
async function slowConsumerCheck(target: Target, tag: string): Promise<string> {
  const before = (await scrapeMetrics(target.url)).get("ticks_slow_consumer_disconnects_total") ?? 0;
  const slow = await open(target.url, `c100k-slow-${tag}`);
  const senders = await Promise.all([0, 1, 2, 3].map((i) => open(target.url, `c100k-slowsender-${tag}-${i}`)));
  (slow.io.engine.transport as unknown as { ws: { _socket: { pause(): void } } }).ws._socket.pause();
  const content = "y".repeat(4000);
  try {
    await Promise.all(
      senders.map((s, i) =>
        Promise.all(
          Array.from({ length: 450 }, (_, k) =>
            s.timeout(60_000).emitWithAck("message:send", { to: `c100k-slow-${tag}`, clientMsgId: `slow-${tag}-${i}-${k}`, content }),
          ),
        ),
      ),
    );
    // The paused device cannot read its own disconnect: the server's counter tells.
    let cut = 0;
    for (let i = 0; i < 50 && cut === 0; i++) {
      cut = ((await scrapeMetrics(target.url)).get("ticks_slow_consumer_disconnects_total") ?? 0) - before;
      if (cut === 0) await sleep(200);
    }
    return `${cut === 1 ? "cut by the server" : `${cut} cut`} after 1,800 messages of 4 KB`;
  } finally {
    slow.disconnect();
    for (const s of senders) s.disconnect();
  }
}

/**
 * The most open files a process may be given here (`ulimit -Hn`). Raising the hard limit
 * needs CAP_SYS_RESOURCE, which a container may not have even for root: then one process
 * cannot hold more sockets than this, and the scenario says so instead of stalling.
 */
function hardFileLimit(): number {
  const out = execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim();
  return out === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(out);
}

export async function runC100kScenario(ctx: Context): Promise<ScenarioResult> {
  const o = options(ctx);
  const hard = hardFileLimit();
  // The server's sockets, its database pools and listeners, and the checks' few sockets.
  const nofile = Math.min(o.sockets + 8192, hard);
  if (o.sockets + 512 > hard) {
    throw new Error(
      `${o.sockets} sockets on one process need about ${o.sockets + 512} open files, and this machine's hard limit is ${hard} ` +
        `(ulimit -Hn; raising it needs root with CAP_SYS_RESOURCE): run with --c100k-sockets ${hard - 1000} or raise the limit`,
    );
  }
  let relay: Target | null = null;
  let r: C100kResult;
  try {
    relay = await startRelayProcess(nofile);
    const run = await runC100k(relay, o, `${ctx.runId}r`, async (old) => {
      await old.stop();
      return startRelayProcess(nofile, old.port);
    });
    relay = run.target;
    r = run.result;
  } finally {
    await relay?.stop();
  }
  const ticks = await startTicksOnFreshDb(C100K_ENV, nofile);
  let current = ticks.target;
  let t: C100kResult;
  try {
    const tag = `${ctx.runId}t`;
    const run = await runC100k(
      current,
      o,
      tag,
      async (old) => {
        await old.stop();
        current = await startTicksProcess({ ...BENCH_ENV, DATABASE_URL: ticks.db.url, ...C100K_ENV }, nofile, old.port);
        return current;
      },
      async (target) => ({ flood: await floodCheck(target.url, tag), slowConsumer: await slowConsumerCheck(target, tag) }),
    );
    t = run.result;
  } finally {
    await current.stop();
    await ticks.probe.close().catch(() => {});
    await ticks.db.drop();
  }
  const MB = 1024 * 1024;
  const row = (label: string, a: number | null, b: number | null) => ({ label, cells: [a, b, ratio(b, a)] });
  const section: Section = {
    title: `C100k: ${o.sockets} sockets on one server process, from ${o.processes} client processes and ${o.addresses} source addresses`,
    columns: ["relay", "ticks", "ticks/relay"],
    rows: [
      { label: "sockets open and synced", cells: [r.sockets, t.sockets, null] },
      row("seconds to open them all", r.connectSeconds, t.connectSeconds),
      row("heap used after, MB", r.after.heapUsed / MB, t.after.heapUsed / MB),
      row("heap KB per socket", r.heapKbPerSocket, t.heapKbPerSocket),
      row("RSS after, MB", r.after.rss / MB, t.after.rss / MB),
      row("RSS KB per socket", r.rssKbPerSocket, t.rssKbPerSocket),
      { heading: `${o.rate} msg/s for ${o.loadSeconds} s, random sender → random user` },
      row("acknowledged", r.load.acked, t.load.acked),
      row("ack p50 ms", r.load.ackMs.p50, t.load.ackMs.p50),
      row("ack p99 ms", r.load.ackMs.p99, t.load.ackMs.p99),
      row("event-loop lag p99 ms (mean of 1 s samples)", r.lagP99Ms, t.lagP99Ms),
      row("event-loop lag max ms", r.lagMaxMs, t.lagMaxMs),
      { heading: "restart on the same port, every socket reconnecting at once" },
      row("seconds from the stop to all synced", r.restart.secondsToAllSynced, t.restart.secondsToAllSynced),
      row("seconds from the new process' first /readyz 200", r.restart.secondsFromReady, t.restart.secondsFromReady),
      row("sockets synced again", r.restart.resynced, t.restart.resynced),
      row("/readyz polls after the first 200 (every 250 ms)", r.restart.readyzPolls, t.restart.readyzPolls),
      row("/readyz answers not 200", r.restart.readyzNotOk, t.restart.readyzNotOk),
      row("/readyz slowest answer ms", r.restart.readyzMaxMs, t.restart.readyzMaxMs),
    ],
    notes: [
      "heap = nodejs_heap_size_used_bytes, RSS = process_resident_memory_bytes, after a forced full GC; lag = prom-client's nodejs_eventloop_lag_*",
      "ack latency from the scheduled send time (open loop), over every client process",
      `ticks with RATE_LIMIT_EVENTS_PER_SEC=100, RATE_LIMIT_BURST=500, MAX_SOCKET_BUFFER_BYTES=1 MiB; flood: ${t.checks.flood}; slow consumer: ${t.checks.slowConsumer}`,
      ...[r, t].filter((x) => x.failed).map((x) => `${x.target}: ${x.failed} sockets failed their first connect (${x.firstError})`),
    ],
  };
  return { sections: [section], data: { options: { ...o, log: undefined }, relay: r, ticks: t } };
}
