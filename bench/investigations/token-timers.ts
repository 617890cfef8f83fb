/**
 * What token expiry costs per idle socket: 10 000 sockets registered with TokenLifetimes (one
 * shared DeadlineQueue, one timer), against the naive way (a setTimeout with a closure per
 * socket). Heap is read after a forced full GC; times are medians of repeated runs.
 *
 *   node --expose-gc --import tsx bench/investigations/token-timers.ts [--sockets 10000]
 *
 * The sockets are stand-ins with the fields TokenLifetimes touches (id, data, on, emit,
 * disconnect), created before the first reading so only the tracking itself is measured.
 */
import { randomBytes } from "node:crypto";
import { createLogger } from "../../src/log";
import { DeadlineQueue } from "../../src/auth/DeadlineQueue";
import { TokenLifetimes } from "../../src/transport/TokenLifetimes";
import type { TicksSocket } from "../../src/transport/types";

const N = Number(process.argv[process.argv.indexOf("--sockets") + 1] || 10_000) || 10_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

const heap = () => {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const timeIt = (runs: number, fn: () => void): number => {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0));
  }
  return median(samples);
};

type FakeSocket = { id: string; connected: boolean; data: { userId: string; tokenExpiresAt: number }; on(): void; emit(): void; disconnect(): void };
const fakeSockets = (n: number, hourFromNow: number): FakeSocket[] =>
  Array.from({ length: n }, (_, i) => ({
    id: randomBytes(15).toString("base64url"), // Socket.IO ids are 20 characters
    connected: true,
    data: { userId: `user-${i}`, tokenExpiresAt: hourFromNow + i * 100 },
    on() {},
    emit() {},
    disconnect() {},
  }));

/** Counts the setTimeout calls `fn` makes (unref'd timers do not show in getActiveResourcesInfo). */
function countTimers(fn: () => void): number {
  const original = globalThis.setTimeout;
  let calls = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    calls++;
    return original(...args);
  }) as typeof setTimeout;
  try {
    fn();
  } finally {
    globalThis.setTimeout = original;
  }
  return calls;
}

function measureLifetimes() {
  const sockets = fakeSockets(N, Date.now() + 3_600_000);
  const verifier = { verify: async () => ({ userId: "x", expiresAt: null }) };
  const before = heap();
  const lifetimes = new TokenLifetimes(verifier, 60_000, createLogger("silent"));
  const timers = countTimers(() => {
    for (const s of sockets) lifetimes.track(s as unknown as TicksSocket);
  });
  const after = heap();
  lifetimes.stop();
  return { bytesPerSocket: (after - before) / N, timers, tracked: N };
}

function measureNaive() {
  const sockets = fakeSockets(N, Date.now() + 3_600_000);
  const before = heap();
  let handles: NodeJS.Timeout[][] = [];
  const timers = countTimers(() => {
    handles = sockets.map((s) => {
    // What a per-socket implementation holds: a timer and a closure over the socket.
    const warn = setTimeout(() => s.emit(), s.data.tokenExpiresAt - 60_000 - Date.now());
    const expire = setTimeout(() => s.disconnect(), s.data.tokenExpiresAt - Date.now());
    return [warn, expire];
    });
  });
  const after = heap();
  for (const [a, b] of handles) {
    clearTimeout(a);
    clearTimeout(b);
  }
  return { bytesPerSocket: (after - before) / N, timers };
}

function measureQueueTimes() {
  const now = Date.now();
  let clock = now;
  let fired = 0;
  const q = new DeadlineQueue<string>(() => fired++, () => clock);
  const ids = Array.from({ length: N }, () => randomBytes(15).toString("base64url"));
  const registerNs = timeIt(5, () => {
    for (let i = 0; i < N; i++) q.set(ids[i]!, now + 3_600_000 + i * 100);
  });
  // The timer firing with nothing (or one socket) due, 10 000 registered.
  const idleSweepNs = timeIt(1001, () => q.sweep());
  const refreshNs = timeIt(5, () => {
    for (let i = 0; i < N; i++) q.set(ids[i]!, now + 7_200_000 + i * 100);
  });
  // One socket due among 10 000 (the usual wake-up: someone's warning or expiry).
  const oneDue: number[] = [];
  for (let k = 0; k < 1001; k++) {
    q.set(`one-${k}`, clock);
    const t0 = process.hrtime.bigint();
    q.sweep();
    oneDue.push(Number(process.hrtime.bigint() - t0));
  }
  const oneDueNs = median(oneDue);
  // Everyone's token expires at the same instant: the worst sweep.
  const mass: number[] = [];
  for (let run = 0; run < 7; run++) {
    for (let i = 0; i < N; i++) q.set(ids[i]!, clock + 1);
    clock += 1;
    fired = 0;
    const t0 = process.hrtime.bigint();
    q.sweep();
    mass.push(Number(process.hrtime.bigint() - t0));
  }
  const massNs = median(mass);
  q.stop();
  return { registerNsPerSocket: registerNs / N, refreshNsPerSocket: refreshNs / N, idleSweepNs, oneDueNs, massExpiryMs: massNs / 1e6, massFired: fired };
}

const lifetimes = measureLifetimes();
const naive = measureNaive();
const times = measureQueueTimes();
const result = { sockets: N, node: process.version, lifetimes, naive, times };
console.log(JSON.stringify(result, null, 2));
console.log(`
token expiry with ${N} idle sockets (node ${process.version})
  TokenLifetimes (one DeadlineQueue):  ${lifetimes.bytesPerSocket.toFixed(0)} B heap per socket, ${lifetimes.timers} timer(s) in total
  naive (2 setTimeouts + closures):    ${naive.bytesPerSocket.toFixed(0)} B heap per socket, ${naive.timers} timers
  register: ${times.registerNsPerSocket.toFixed(0)} ns/socket, refresh (replace deadline): ${times.refreshNsPerSocket.toFixed(0)} ns/socket
  timer wake-up with nothing due: ${(times.idleSweepNs / 1000).toFixed(2)} µs; with one socket due: ${(times.oneDueNs / 1000).toFixed(1)} µs
  all ${times.massFired} due at once: ${times.massExpiryMs.toFixed(1)} ms for the whole sweep (callbacks are no-ops here)`);
