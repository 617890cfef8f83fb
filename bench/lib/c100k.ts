/**
 * One target's C100k run (bench/scenarios/c100k.ts): N sockets on one server process, held
 * by several client processes (bench/c100k-clients.ts), each socket bound to one of several
 * loopback source addresses so that no address runs out of ephemeral ports (about 28,000
 * per address and server port). Then a paced load across them, then a restart of the server
 * on the same port with every socket reconnecting at once.
 */
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { ROOT, scrapeMetrics, spawnChild, type Target, closeClients } from "./procs";
import { waitMessage } from "./idleSockets";
import { sleep, summarize, type Summary } from "./stats";

const CLIENT_TS = path.join(ROOT, "bench/c100k-clients.ts");

export type C100kOptions = {
  sockets: number;
  processes: number;
  /** Source addresses 127.0.0.2 … 127.0.0.(1 + addresses). */
  addresses: number;
  /** Handshakes in flight per client process. */
  batch: number;
  rate: number;
  loadSeconds: number;
  log: (line: string) => void;
};

type Memory = { heapUsed: number; rss: number };
export type C100kResult = {
  target: string;
  sockets: number;
  failed: number;
  firstError: string | null;
  connectSeconds: number;
  before: Memory;
  after: Memory;
  heapKbPerSocket: number;
  rssKbPerSocket: number;
  /** prom-client's event-loop lag during the load, sampled each second: mean p99 and the worst max, ms. */
  lagP99Ms: number | null;
  lagMaxMs: number | null;
  load: { sent: number; acked: number; errors: number; ackMs: Summary };
  restart: {
    /** From the stop signal until every socket had a fresh `sync:complete`. */
    secondsToAllSynced: number | null;
    /** From the new process answering /readyz 200. */
    secondsFromReady: number | null;
    resynced: number;
    /** /readyz polled every 250 ms, from the new process' first 200 until all were synced. */
    readyzPolls: number;
    readyzNotOk: number;
    readyzMaxMs: number;
  };
  /** Extra checks the caller ran while the sockets were open (flood, slow consumer). */
  checks: Record<string, string>;
};

async function memory(target: Target): Promise<Memory> {
  await sleep(1000);
  await target.gc();
  const m = await scrapeMetrics(target.url);
  return { heapUsed: m.get("nodejs_heap_size_used_bytes") ?? NaN, rss: m.get("process_resident_memory_bytes") ?? NaN };
}

/** Samples the target's event-loop lag every second until stopped. */
function sampleLag(target: Target): () => Promise<{ p99: number | null; max: number | null }> {
  const p99s: number[] = [];
  let max: number | null = null;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const m = await scrapeMetrics(target.url);
        const p99 = m.get("nodejs_eventloop_lag_p99_seconds");
        const worst = m.get("nodejs_eventloop_lag_max_seconds");
        if (p99 !== undefined) p99s.push(p99 * 1000);
        if (worst !== undefined) max = Math.max(max ?? 0, worst * 1000);
      } catch {
        // a missed sample
      }
      await sleep(1000);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return { p99: p99s.length ? p99s.reduce((a, b) => a + b, 0) / p99s.length : null, max };
  };
}

/** Polls /readyz every 250 ms until stopped; each answer's time, whether it was 200, and how long it took. */
function pollReadyz(url: string): () => Promise<{ at: number; ok: boolean; ms: number }[]> {
  const polls: { at: number; ok: boolean; ms: number }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      let ok = false;
      try {
        const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) });
        await res.text();
        ok = res.status === 200;
      } catch {
        // down (restarting) or too slow
      }
      polls.push({ at: t0, ok, ms: performance.now() - t0 });
      await sleep(250);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return polls;
  };
}

/**
 * `restart` stops the target and starts it again on the same port, resolving with the new
 * one; `whileOpen` runs after the load, with the sockets open (the bad-input checks).
 */
export async function runC100k(
  first: Target,
  o: C100kOptions,
  tag: string,
  restart: (old: Target) => Promise<Target>,
  whileOpen: (target: Target) => Promise<Record<string, string>> = async () => ({}),
): Promise<{ result: C100kResult; target: Target }> {
  let target = first;
  const share = Math.ceil(o.sockets / o.processes);
  const addresses = Array.from({ length: o.addresses }, (_, i) => `127.0.0.${i + 2}`);
  const before = await memory(target);
  const children: ChildProcess[] = [];
  try {
    for (let p = 0; p < o.processes; p++) {
      const count = Math.min(share, o.sockets - p * share);
      if (count <= 0) break;
      // Each process its own addresses (when there are enough), so none competes for another's ports.
      const own = o.addresses >= o.processes ? addresses.filter((_, i) => i % o.processes === p) : [addresses[p % o.addresses]!];
      const child = spawnChild(
        ["--max-old-space-size=1536", "--import", "tsx", CLIENT_TS],
        {
          C100K_URL: target.url,
          C100K_COUNT: String(count),
          C100K_OFFSET: String(p * share),
          C100K_TOTAL: String(o.sockets),
          C100K_BATCH: String(o.batch),
          C100K_TAG: tag,
          C100K_ADDRESSES: own.join(","),
        },
        count + 1024,
      );
      child.stdout?.resume();
      child.stderr?.on("data", (d: Buffer) => o.log(`c100k client: ${d.toString().trim()}`));
      children.push(child);
    }
    await Promise.all(children.map((c) => waitMessage(c, "c100k-ready", 120_000)));
    type Connected = { opened: number; failed: number; firstError: string | null; seconds: number };
    const connecting = Promise.all(children.map((c) => waitMessage<Connected>(c, "c100k-connected", 1_800_000)));
    for (const c of children) c.send({ bench: "connect" });
    const connected = await connecting;
    const connectSeconds = Math.max(...connected.map((r) => r.seconds));
    const opened = connected.reduce((s, r) => s + r.opened, 0);
    o.log(`c100k ${target.name}: ${opened} sockets synced in ${connectSeconds.toFixed(1)} s`);
    const after = await memory(target);

    const stopLag = sampleLag(target);
    type Loaded = { sent: number; acked: number; errors: number; ackMs: number[] };
    const loading = Promise.all(children.map((c) => waitMessage<Loaded>(c, "c100k-loaded", o.loadSeconds * 1000 + 120_000)));
    for (const c of children) c.send({ bench: "load", rate: o.rate / children.length, ms: o.loadSeconds * 1000 });
    const loaded = await loading;
    const lag = await stopLag();
    const ackMs = summarize(loaded.flatMap((l) => l.ackMs));
    o.log(`c100k ${target.name}: ${ackMs.n} acks at ${o.rate} msg/s, p50 ${ackMs.p50?.toFixed(1)} p99 ${ackMs.p99?.toFixed(1)} ms`);
    const checks = await whileOpen(target);

    // The restart: every socket's next `sync:complete` is counted from here.
    type Resynced = { synced: number; seconds: number };
    const resyncing = Promise.all(
      children.map((c) => waitMessage<Resynced>(c, "c100k-resynced", 1_200_000).then((r) => ({ ...r, at: performance.now() }))),
    );
    for (const c of children) c.send({ bench: "watch-resync", timeoutMs: 900_000 });
    await sleep(500);
    const t0 = performance.now();
    const stopReadyz = pollReadyz(target.url);
    target = await restart(target);
    // The new process is up: it answered /readyz 200 (procs.ts starts it so).
    const readyAt = performance.now();
    const resynced = await resyncing;
    const allAt = Math.max(...resynced.map((r) => r.at));
    const rz = (await stopReadyz()).filter((p) => p.at >= readyAt);
    const total = resynced.reduce((s, r) => s + r.synced, 0);
    o.log(`c100k ${target.name}: ${total} resynced ${((allAt - t0) / 1000).toFixed(1)} s after the restart began`);
    return {
      target,
      result: {
        target: target.name,
        sockets: opened,
        failed: connected.reduce((s, r) => s + r.failed, 0),
        firstError: connected.find((r) => r.firstError)?.firstError ?? null,
        connectSeconds,
        before,
        after,
        heapKbPerSocket: (after.heapUsed - before.heapUsed) / 1024 / opened,
        rssKbPerSocket: (after.rss - before.rss) / 1024 / opened,
        lagP99Ms: lag.p99,
        lagMaxMs: lag.max,
        load: { sent: loaded.reduce((s, l) => s + l.sent, 0), acked: loaded.reduce((s, l) => s + l.acked, 0), errors: loaded.reduce((s, l) => s + l.errors, 0), ackMs },
        restart: {
          secondsToAllSynced: total >= opened ? (allAt - t0) / 1000 : null,
          secondsFromReady: total >= opened ? (allAt - readyAt) / 1000 : null,
          resynced: total,
          readyzPolls: rz.length,
          readyzNotOk: rz.filter((p) => !p.ok).length,
          readyzMaxMs: Math.max(0, ...rz.map((p) => p.ms)),
        },
        checks,
      },
    };
  } finally {
    await closeClients(children, 30_000);
  }
}
