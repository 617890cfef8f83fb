/**
 * The client side of the soak scenario, in its own process (run with --expose-gc) so the
 * SDK's memory is measured apart from the server's and the harness's: devices built on the
 * SDK (src/client/TicksClient) connect, sync, send at a paced rate and leave; a share of
 * them never acknowledge what they receive; a few stay for the whole run. Every 10 s it
 * reports its own heap (after a full GC) and counters over IPC; at the end every user
 * connects once more and drains its backlog, so the database can be checked for loss.
 *
 * Settings (env): SOAK_URL, SOAK_TAG, SOAK_SECONDS, SOAK_RATE (msg/s in all), SOAK_USERS,
 * SOAK_DEVICES (sessions open at once), SOAK_STAYERS, SOAK_NOACK_SHARE, SOAK_CONTENT_SIZE, SOAK_PEERS, SOAK_PREFILL, SOAK_MEMORY_LOG,
 * SOAK_HEAP_SNAPSHOT.
 */
import { writeHeapSnapshot } from "node:v8";
import { io } from "socket.io-client";
import { request, type ClientSocket } from "../src/client/request";
import { TicksClient } from "../src/client/TicksClient";

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const url = process.env.SOAK_URL!;
const tag = process.env.SOAK_TAG ?? "soak";
const seconds = env("SOAK_SECONDS", 600);
const rate = env("SOAK_RATE", 100);
const users = env("SOAK_USERS", 300);
const devices = env("SOAK_DEVICES", 100);
const stayers = env("SOAK_STAYERS", 5);
const noAckShare = env("SOAK_NOACK_SHARE", 0.2);
const content = "x".repeat(env("SOAK_CONTENT_SIZE", 200));
/** 0: each send goes to a random user (chat lists grow all run); n: to one of n fixed peers (steady). */
const peers = env("SOAK_PEERS", 0);
/** With fixed peers: messages each user sends each of its peers before the run, so conversations start longer than a page. */
const prefill = env("SOAK_PREFILL", 0);

const userId = (i: number) => `soak-${tag}-${i}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the soak needs of a device: the SDK, or (for devices that never acknowledge) a bare socket. */
type Device = {
  socket: ClientSocket;
  request: TicksClient["request"];
  connect(): Promise<void>;
  close(): void;
};
type Session = { client: Device; user: number; acks: boolean; endsAt: number; ready: boolean; inflight: number };

/**
 * A device that never acknowledges: the SDK always does (after handing messages to the app),
 * so this one is a bare socket whose listeners keep what they get and confirm nothing.
 */
function silentDevice(user: string, deviceId: string): Device {
  const socket = io(url, { auth: { userId: user, deviceId }, transports: ["websocket"], reconnection: false, autoConnect: false }) as ClientSocket;
  socket.on("message:new", () => counters.received++);
  socket.on("message:backlog", () => {});
  return {
    socket,
    request: (event, payload) => request(socket, event, payload, 10_000),
    connect: () =>
      new Promise((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("connect_error", reject);
        socket.connect();
      }),
    close: () => socket.disconnect(),
  };
}

/** Messages an SDK device was handed from the server (not its own sends or fetched history). */
const fromServer = (source: string) => source === "live" || source === "backlog";

const counters = {
  sessions: 0,
  noAckSessions: 0,
  connectErrors: 0,
  sends: 0,
  acked: 0,
  duplicateReplies: 0,
  timeouts: 0,
  errors: {} as Record<string, number>,
  received: 0,
};
const active = new Set<Session>();
let inflight = 0;
/** Which sends were acknowledged, by number (clientMsgId `${tag}-${n}`): one byte each. */
const ackedBitmap = new Uint8Array(Math.ceil(seconds * rate * 1.5) + 1000);

function open(user: number, acks: boolean, lifetimeMs: number): Session {
  const deviceId = `d${counters.sessions}`;
  let client: Device;
  if (acks) {
    const sdk = new TicksClient({ url, userId: userId(user), deviceId, socket: { reconnection: false } });
    sdk.on("message", (_m, source) => {
      if (fromServer(source)) counters.received++;
    });
    client = sdk;
  } else {
    counters.noAckSessions++;
    client = silentDevice(userId(user), deviceId);
  }
  const session: Session = { client, user, acks, endsAt: Date.now() + lifetimeMs, ready: false, inflight: 0 };
  counters.sessions++;
  active.add(session);
  client.connect().then(
    () => (session.ready = true),
    () => {
      counters.connectErrors++;
      active.delete(session);
    },
  );
  return session;
}

function close(session: Session): void {
  active.delete(session);
  session.client.close();
}

async function send(session: Session): Promise<void> {
  let to = Math.floor(Math.random() * users);
  if (to === session.user) to = (to + 1) % users;
  // Fixed peers: user u writes to u+1…u+n (and hears from u-1…u-n): 2n conversations, all begun in the first minute.
  if (peers > 0) to = (session.user + 1 + Math.floor(Math.random() * peers)) % users;
  const n = ++counters.sends;
  inflight++;
  session.inflight++;
  try {
    const reply = await session.client.request("message:send", {
      clientMsgId: `${tag}-${n}`,
      to: userId(to),
      content,
    });
    if (reply.ok) {
      counters.acked++;
      if (n < ackedBitmap.length) ackedBitmap[n] = 1;
      if (reply.duplicate) counters.duplicateReplies++;
    } else counters.errors[reply.error.code] = (counters.errors[reply.error.code] ?? 0) + 1;
  } catch {
    counters.timeouts++; // no acknowledgement within the SDK's timeout
  } finally {
    inflight--;
    session.inflight--;
  }
}

function sample(kind: string): void {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  process.send?.({ bench: kind, at: Date.now(), heapUsed: m.heapUsed, rss: m.rss, active: active.size, inflight, ...counters });
  if (process.env.SOAK_MEMORY_LOG) {
    // What the live SDK clients hold (TicksClient.memory()): tells data held apart from leaks.
    const held = { clients: 0, conversations: 0, cached: 0, listed: 0, statuses: 0 };
    for (const s of active) {
      if (!(s.client instanceof TicksClient)) continue;
      const mem = s.client.memory();
      held.clients++;
      held.conversations += mem.conversations;
      held.cached += mem.cached;
      held.listed += mem.listed;
      held.statuses += mem.statuses;
    }
    console.error(`heap ${(m.heapUsed / 1048576).toFixed(1)} MB, live SDK clients hold ${JSON.stringify(held)}`);
  }
}

/**
 * The warm-up of a steady soak (SOAK_PEERS, SOAK_PREFILL): each user, from a bare socket,
 * sends `prefill` messages to each of its peers, 25 users at a time, before any SDK client
 * connects. They wait in the recipients' backlogs like any message sent to someone offline.
 */
async function prefillHistory(): Promise<number> {
  let sent = 0;
  const batch = 25;
  for (let i = 0; i < users; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, users - i) }, async (_, j) => {
        const u = i + j;
        const device = silentDevice(userId(u), "prefill");
        await device.connect();
        for (let k = 0; k < prefill; k++) {
          for (let p = 1; p <= peers; p++) {
            const reply = await device.request("message:send", { clientMsgId: `${tag}-w${u}-${p}-${k}`, to: userId((u + p) % users), content });
            if (reply.ok) sent++;
          }
        }
        device.close();
      }),
    );
  }
  return sent;
}

async function main(): Promise<void> {
  if (peers > 0 && prefill > 0) {
    const started = Date.now();
    const sent = await prefillHistory();
    counters.received = 0;
    console.error(`warm-up: ${sent} messages to fixed peers in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const t0 = Date.now();
  // The run's clock starts here (after any warm-up): the harness times its samples from it.
  process.send?.({ bench: "soak-start", at: t0 });
  for (let i = 0; i < stayers; i++) open(i, true, Infinity);
  const churn = setInterval(() => {
    const now = Date.now();
    // A device leaves once its sends are answered: an unanswered one would be the churn's doing.
    for (const s of active) if (s.endsAt <= now && s.inflight === 0) close(s);
    // A few handshakes per tick: churn, not a connection storm.
    for (let k = 0; k < 5 && active.size < devices; k++) {
      const acks = Math.random() >= noAckShare;
      open(stayers + Math.floor(Math.random() * (users - stayers)), acks, 5_000 + Math.random() * 25_000);
    }
  }, 100);
  let due = 0;
  const pacer = setInterval(() => {
    const target = Math.floor(((Date.now() - t0) / 1000) * rate);
    const senders = [...active].filter((s) => s.ready && s.client.socket.connected && s.endsAt > Date.now());
    for (; due < target && senders.length > 0; due++) void send(senders[Math.floor(Math.random() * senders.length)]!);
    due = Math.max(due, target); // nobody connected to send: those sends are skipped, not bunched
  }, 20);
  const sampler = setInterval(() => sample("soak-sample"), 10_000);
  sample("soak-sample");
  // SOAK_HEAP_SNAPSHOT=dir: heap snapshots of this process at 60 s and at the end of the traffic.
  const snapshot = (name: string) => {
    if (process.env.SOAK_HEAP_SNAPSHOT) console.error(`heap snapshot ${writeHeapSnapshot(`${process.env.SOAK_HEAP_SNAPSHOT}/${name}.heapsnapshot`)}`);
  };
  const early = setTimeout(() => snapshot("at-60s"), Math.min(60, seconds / 3) * 1000);
  await sleep(seconds * 1000);
  clearTimeout(early);
  snapshot("at-end");
  clearInterval(pacer);
  clearInterval(churn);
  while (inflight > 0) await sleep(50);
  clearInterval(sampler);
  sample("soak-traffic-done");
  for (const s of [...active]) close(s);

  // Every user once more, acknowledging: afterwards nothing may be left undelivered.
  let drained = 0;
  for (let i = 0; i < users; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, users - i) }, async (_, j) => {
        const client = new TicksClient({ url, userId: userId(i + j), deviceId: "drain", socket: { reconnection: false } });
        client.on("message", (_m, source) => {
          if (fromServer(source)) drained++;
        });
        const synced = client.whenSynced();
        await client.connect();
        await synced;
        client.close();
      }),
    );
  }
  const ackedNumbers: number[] = [];
  ackedBitmap.forEach((v, n) => v && ackedNumbers.push(n));
  process.send?.({ bench: "soak-done", drained, ackedIds: ackedNumbers.map((n) => `${tag}-${n}`), ...counters }, () => process.exit(0));
}

process.channel?.unref();
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
