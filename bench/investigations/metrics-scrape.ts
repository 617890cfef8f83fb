/**
 * Issue 23: what one GET /metrics costs the event loop with many sockets open, prom-client's
 * default collectors against Ticks' registry (src/metrics.ts, which drops the per-handle
 * ones and lists /proc/self/fd off the loop). Opens `--sockets` loopback TCP connections in
 * this process (both ends count: half as many pairs), then renders each registry
 * `--scrapes` times and prints the wall time of a render and the longest the loop was held
 * meanwhile (perf_hooks.monitorEventLoopDelay). No server, no database: only the collectors.
 *
 *   sh -c 'ulimit -n 20000; node --import tsx bench/investigations/metrics-scrape.ts --sockets 19000'
 */
import { Command } from "commander";
import net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import client from "prom-client";
import { Metrics } from "../../src/metrics";

const o = new Command().option("--sockets <n>", "sockets open in this process (pairs × 2)", "19000").option("--scrapes <n>", "renders per registry", "30").parse().opts();

async function openPairs(pairs: number): Promise<() => void> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const clients: net.Socket[] = [];
  for (let i = 0; i < pairs; i += 500) {
    const batch = Array.from({ length: Math.min(500, pairs - i) }, () => {
      const s = net.connect(port, "127.0.0.1");
      clients.push(s);
      return new Promise<void>((r, j) => s.once("connect", () => r()).once("error", j));
    });
    await Promise.all(batch);
  }
  return () => {
    for (const s of [...clients, ...accepted]) s.destroy();
    server.close();
  };
}

async function measure(name: string, registry: client.Registry, scrapes: number): Promise<string> {
  await registry.metrics(); // warm
  const walls: number[] = [];
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  for (let i = 0; i < scrapes; i++) {
    const t0 = performance.now();
    await registry.metrics();
    walls.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  h.disable();
  walls.sort((a, b) => a - b);
  const med = walls[Math.floor(walls.length / 2)]!;
  return `${name.padEnd(34)} ${med.toFixed(2).padStart(9)} ${walls.at(-1)!.toFixed(2).padStart(9)} ${(h.max / 1e6).toFixed(2).padStart(12)}`;
}

async function main(): Promise<void> {
  const sockets = Number(o.sockets);
  const scrapes = Number(o.scrapes);
  console.log(`${"registry".padEnd(34)} ${"median ms".padStart(9)} ${"max ms".padStart(9)} ${"loop held ms".padStart(12)}`);
  for (const n of [0, sockets]) {
    const close = await openPairs(Math.floor(n / 2));
    const defaults = new client.Registry();
    client.collectDefaultMetrics({ register: defaults });
    console.log(await measure(`prom-client defaults, ${n} sockets`, defaults, scrapes));
    console.log(await measure(`Ticks' Metrics, ${n} sockets`, new Metrics().registry, scrapes));
    close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
