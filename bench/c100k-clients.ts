/**
 * A child of the c100k scenario (bench/scenarios/c100k.ts): holds C100K_COUNT sockets of
 * users c100k-<tag>-<offset+i>, each bound to one of C100K_ADDRESSES (127.0.0.x, round robin,
 * so that no source address runs out of ephemeral ports), and does what the parent asks
 * over IPC:
 *
 *   connect            open them all, C100K_BATCH handshakes in flight; each counts at its `sync:complete`
 *   load {rate, ms}    send `rate` msg/s from random own sockets to random users of the whole
 *                      run (C100K_TOTAL), timed from the scheduled send to the acknowledgement;
 *                      with `senders: n` only this process' first n sockets send, and with
 *                      `partner: "fixed"` each always to the same user (a fixed set of pairs,
 *                      whose conversations a first load creates: bench/investigations/c100k-load.ts)
 *   watch-resync       after a server restart: report when every socket has a fresh `sync:complete`
 *   close              disconnect and exit
 *
 * The listeners are shared by every socket (`this` is the socket), so a client process
 * holding 12,500 sockets stays small. Each socket reconnects by itself after the server
 * goes away (Socket.IO's backoff), and after a server-side disconnect too (which Socket.IO
 * leaves to the application).
 */
import type { ClientSocket } from "../test/helpers/socket";
import { clientSocket } from "../test/helpers/socket";

const url = process.env.C100K_URL!;
const count = Number(process.env.C100K_COUNT);
const offset = Number(process.env.C100K_OFFSET ?? 0);
const total = Number(process.env.C100K_TOTAL ?? count);
const batch = Number(process.env.C100K_BATCH ?? 200);
const tag = process.env.C100K_TAG ?? "x";
const addresses = (process.env.C100K_ADDRESSES ?? "127.0.0.1").split(",");
const userOf = (i: number) => `c100k-${tag}-${i}`;

const sockets: ClientSocket[] = [];
/** Sockets with a `sync:complete` since the last watch began (or since connect). */
let synced = 0;
const isSynced = new Uint8Array(count);
const indexOf = new WeakMap<ClientSocket, number>();
let failed = 0;
let firstError: string | null = null;

function onSyncComplete(this: ClientSocket) {
  const i = indexOf.get(this)!;
  if (isSynced[i]) return;
  isSynced[i] = 1;
  synced++;
}
function onBacklog(this: ClientSocket, _page: unknown, ack?: () => void) {
  ack?.();
}
function onMessage(this: ClientSocket, _message: unknown, ack?: () => void) {
  ack?.();
}
function onDisconnect(this: ClientSocket, reason: string) {
  const i = indexOf.get(this)!;
  if (isSynced[i]) {
    isSynced[i] = 0;
    synced--;
  }
  // A server that closes the connection itself (shutdown) is not reconnected to by Socket.IO:
  // the application decides; here, as a real client would, after a random pause.
  if (reason === "io server disconnect" && !closing) setTimeout(() => this.connect(), Math.random() * 1000);
}
let closing = false;

async function connectAll(): Promise<{ opened: number; failed: number; firstError: string | null; seconds: number }> {
  const t0 = performance.now();
  const open = (i: number) =>
    new Promise<void>((resolve) => {
      const socket = clientSocket(
        url,
        { userId: userOf(offset + i), deviceId: "c100k" },
        { reconnection: true, localAddress: addresses[i % addresses.length] } as Parameters<typeof clientSocket>[2],
      );
      indexOf.set(socket, i);
      socket.on("message:backlog", onBacklog);
      socket.on("message:new", onMessage);
      socket.on("disconnect", onDisconnect);
      (socket as unknown as { on(e: string, f: () => void): void }).on("sync:complete", onSyncComplete);
      const timer = setTimeout(() => done(new Error(`no sync:complete within 120 s`)), 120_000);
      const done = (err?: Error) => {
        clearTimeout(timer);
        socket.off("connect_error", done);
        (socket as unknown as { off(e: string, f: () => void): void }).off("sync:complete", ok);
        if (err) {
          failed++;
          firstError ??= err.message;
        }
        resolve();
      };
      const ok = () => done();
      // The first connect_error counts as a failure; Socket.IO keeps retrying it in the background.
      socket.once("connect_error", done);
      (socket as unknown as { once(e: string, f: () => void): void }).once("sync:complete", ok);
      sockets.push(socket);
      socket.connect();
    });
  let next = 0;
  const lane = async () => {
    while (next < count) await open(next++);
  };
  await Promise.all(Array.from({ length: Math.min(batch, count) }, lane));
  return { opened: synced, failed, firstError, seconds: (performance.now() - t0) / 1000 };
}

/** Open loop: every send is timed from its scheduled time (no coordinated omission). */
async function load(
  rate: number,
  ms: number,
  senders = 0,
  partner: "random" | "fixed" = "random",
): Promise<{ sent: number; acked: number; errors: number; ackMs: number[] }> {
  const pool = senders > 0 ? sockets.slice(0, senders) : sockets;
  const ackMs: number[] = [];
  let sent = 0;
  let acked = 0;
  let errors = 0;
  const interval = 1000 / rate;
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let k = 0; ; k++) {
    const scheduled = t0 + k * interval;
    if (scheduled - t0 >= ms) break;
    const wait = scheduled - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const socket = pool[Math.floor(Math.random() * pool.length)]!;
    const from = indexOf.get(socket)! + offset;
    let to = partner === "fixed" ? (from + Math.floor(total / 2)) % total : Math.floor(Math.random() * total);
    if (to === from) to = (to + 1) % total;
    sent++;
    pending.push(
      socket
        .timeout(30_000)
        .emitWithAck("message:send", { to: userOf(to), clientMsgId: `${tag}-${from}-${k}-${process.pid}`, content: "c100k" })
        .then(
          (reply) => {
            if ((reply as { ok: boolean }).ok) {
              acked++;
              ackMs.push(performance.now() - scheduled);
            } else errors++;
          },
          () => {
            errors++;
          },
        ),
    );
  }
  await Promise.all(pending);
  return { sent, acked, errors, ackMs };
}

/** Sent before the server stops: from here on only a fresh `sync:complete` counts. */
function watchResync(timeoutMs: number): Promise<{ synced: number; seconds: number }> {
  isSynced.fill(0);
  synced = 0;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const tick = setInterval(() => {
      const seconds = (performance.now() - t0) / 1000;
      process.send?.({ bench: "c100k-progress", synced });
      if (synced >= count || seconds * 1000 > timeoutMs) {
        clearInterval(tick);
        resolve({ synced, seconds });
      }
    }, 100);
  });
}

type Command = { bench?: string; rate?: number; ms?: number; timeoutMs?: number; senders?: number; partner?: "random" | "fixed" };

process.on("message", (m: Command) => {
  const reply = (kind: string) => (result: object) => process.send?.({ bench: kind, ...result });
  if (m?.bench === "connect") void connectAll().then(reply("c100k-connected"));
  else if (m?.bench === "load") void load(m.rate!, m.ms!, m.senders, m.partner).then(reply("c100k-loaded"));
  else if (m?.bench === "watch-resync") void watchResync(m.timeoutMs!).then(reply("c100k-resynced"));
  else if (m?.bench === "close") {
    closing = true;
    for (const s of sockets) s.disconnect();
    process.send?.({ bench: "c100k-closed" }, () => process.exit(0));
  }
});
process.send?.({ bench: "c100k-ready" });
