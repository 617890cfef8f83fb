/**
 * Classic vs sharded Redis adapter, side by side in one run: two Ticks processes, senders
 * on one, recipients on the other, so every message and receipt crosses Redis.
 *   node --import tsx bench/adapters.ts [seconds-per-round] [rounds]
 * (build first: the nodes run dist/). Prints msg/s and delivery latency per adapter.
 */
import { io, type Socket } from "socket.io-client";
import { createTestDatabase } from "../test/helpers/database";
import { spawnNode } from "../test/helpers/processes";

const SECONDS = Number(process.argv[2] ?? 10);
const ROUNDS = Number(process.argv[3] ?? 2);
const PAIRS = 50;
const IN_FLIGHT = 8;

type Result = { adapter: string; msgPerSec: number; p50: number; p99: number };

const pct = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function connect(url: string, userId: string): Promise<Socket> {
  const s = io(url, { auth: { userId }, transports: ["websocket"], reconnection: false });
  await new Promise<void>((resolve, reject) => {
    s.once("sync:complete", () => resolve());
    s.once("connect_error", reject);
  });
  return s;
}

async function round(adapter: "classic" | "sharded", roundNo: number): Promise<Result> {
  const db = await createTestDatabase();
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: "redis://127.0.0.1:6379",
    REDIS_ADAPTER: adapter,
    REDIS_PREFIX: `bench-${adapter}-${roundNo}-${process.pid}`,
    AUTH_MODE: "dev",
    RATE_LIMIT_EVENTS_PER_SEC: "0",
  };
  // Started one after the other, so a node that fails to start leaves nothing behind.
  const a = await spawnNode(env).catch(async (err) => {
    await db.drop();
    throw err;
  });
  const b = await spawnNode(env).catch(async (err) => {
    await a.kill("SIGKILL");
    await db.drop();
    throw err;
  });
  const latencies: number[] = [];
  let delivered = 0;
  let measuring = false;
  const senders: Socket[] = [];
  const recipients: Socket[] = [];
  try {
    for (let i = 0; i < PAIRS; i++) {
      const r = await connect(b.url, `r${i}`);
      r.on("message:new", (m: { content: string }, ack: () => void) => {
        ack();
        if (!measuring) return;
        delivered++;
        latencies.push(Date.now() - Number(m.content));
      });
      recipients.push(r);
      senders.push(await connect(a.url, `s${i}`));
    }
    let stop = false;
    let seq = 0;
    const loop = async (s: Socket, to: string) => {
      while (!stop) {
        await s.timeout(10_000).emitWithAck("message:send", { clientMsgId: `${seq++}`, to, content: String(Date.now()) });
      }
    };
    const loops = senders.flatMap((s, i) => Array.from({ length: IN_FLIGHT }, () => loop(s, `r${i}`)));
    await new Promise((r) => setTimeout(r, 2000)); // warm-up
    measuring = true;
    const started = Date.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    measuring = false;
    const elapsed = (Date.now() - started) / 1000;
    stop = true;
    await Promise.allSettled(loops);
    return { adapter, msgPerSec: Math.round(delivered / elapsed), p50: pct(latencies, 50), p99: pct(latencies, 99) };
  } finally {
    [...senders, ...recipients].forEach((s) => s.disconnect());
    await Promise.all([a.kill("SIGKILL"), b.kill("SIGKILL")]);
    await db.drop();
  }
}

async function main(): Promise<void> {
  const results: Result[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const adapter of r % 2 === 0 ? (["classic", "sharded"] as const) : (["sharded", "classic"] as const)) {
      const res = await round(adapter, r);
      console.log(`round ${r + 1} ${res.adapter.padEnd(8)} ${res.msgPerSec} msg/s delivered  p50 ${res.p50} ms  p99 ${res.p99} ms`);
      results.push(res);
    }
  }
  for (const adapter of ["classic", "sharded"]) {
    const mine = results.filter((x) => x.adapter === adapter);
    const avg = (k: "msgPerSec" | "p50" | "p99") => Math.round(mine.reduce((s, x) => s + x[k], 0) / mine.length);
    console.log(`mean ${adapter.padEnd(8)} ${avg("msgPerSec")} msg/s  p50 ${avg("p50")} ms  p99 ${avg("p99")} ms`);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
