/**
 * What the per-user rate limit does to honest clients and to a flooder, at the server's
 * default settings (or whatever RATE_LIMIT_* the environment gives):
 *
 *   npm run bench -- --scenarios rate-limit
 *   RATE_LIMIT_BURST=0 npm run bench -- --scenarios rate-limit     # the per-second window alone
 *
 * One in-process server on a fresh database (local PostgreSQL), one user per run so each
 * starts with a full budget. Counts RATE_LIMITED answers; docs/rate-limits.md has the
 * results and why the defaults are what they are. Not in the default run.
 */
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/log";
import { startTicks, type RunningTicks } from "../../src/main";
import type { ClientEventName } from "../../src/protocol";
import { Device, uniqueId } from "../../test/helpers/device";
import { urlOf } from "../../test/helpers/server";
import { sleep } from "../lib/stats";
import type { Row, Section } from "../lib/table";
import { benchDatabase } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

type Reply = { ok: boolean; error?: { code: string } };
type Tally = { events: number; limited: number; seconds: number };

/** Sends one event and counts its outcome; anything but ok or RATE_LIMITED is a bench bug. */
function counter(device: Device, rttMs = 0) {
  const tally: Tally = { events: 0, limited: 0, seconds: 0 };
  const started = performance.now();
  const emit = async (event: ClientEventName, payload: unknown): Promise<Reply> => {
    // A client across a network waits a round trip more for every answer than one on localhost.
    if (rttMs > 0) await sleep(rttMs);
    const reply = (await device.raw(event, payload)) as Reply;
    tally.events++;
    if (reply.error?.code === "RATE_LIMITED") tally.limited++;
    else if (!reply.ok) throw new Error(`${event}: ${JSON.stringify(reply.error)}`);
    tally.seconds = (performance.now() - started) / 1000;
    return reply;
  };
  return { emit, tally };
}

async function pair(server: RunningTicks, name: string) {
  const [meId, peerId] = [uniqueId(name), uniqueId(`${name}-peer`)];
  const me = await new Device(urlOf(server), { userId: meId }).connectSynced();
  const peer = await new Device(urlOf(server), { userId: peerId }).connectSynced();
  return { me, peer, meId, peerId };
}

const conversationOf = (reply: Reply) => (reply as unknown as { message: { conversationId: string } }).message.conversationId;

/**
 * The client: one message at a time, waiting for each ack, with what a chat UI does
 * around it: typing before, reading the peer's replies, a conversation list now and then.
 */
async function plainSender(server: RunningTicks, rttMs: number, sends = 150): Promise<Tally> {
  const { me, peer, meId } = await pair(server, "plain");
  const conversationId = conversationOf(
    await peer.request("message:send", { clientMsgId: uniqueId("r"), to: meId, content: "hello" }),
  );
  const { emit, tally } = counter(me, rttMs);
  let read = 0;
  for (let i = 0; i < sends; i++) {
    await emit("typing", { conversationId, typing: true });
    await emit("message:send", { clientMsgId: uniqueId("m"), conversationId, content: `line ${i}` });
    if (i % 3 === 0) void peer.request("message:send", { clientMsgId: uniqueId("r"), to: meId, content: "ok" }).catch(() => {});
    const unread = me.received.slice(read).map((m) => m.id);
    read += unread.length;
    if (unread.length > 0) await emit("message:read", { messageIds: unread });
    if (i % 10 === 0) await emit("conversation:list", {});
  }
  me.close();
  peer.close();
  return tally;
}

/**
 * A busy human: pastes 50 lines (an outbox flushes them without waiting for each ack),
 * the app lists conversations and reads what came in, the user types on, and the app
 * reconnects and gap-fills 30 conversations, all within a second or two.
 */
async function busyHuman(server: RunningTicks): Promise<Tally> {
  const { me, peer, peerId } = await pair(server, "human");
  const { emit, tally } = counter(me);
  const first = await emit("message:send", { clientMsgId: uniqueId("m"), to: peerId, content: "hi" });
  const conversationId = conversationOf(first);
  const lines = Array.from({ length: 50 }, (_, i) =>
    emit("message:send", { clientMsgId: uniqueId("m"), conversationId, content: `pasted line ${i}` }),
  );
  await Promise.all([
    ...lines,
    emit("typing", { conversationId, typing: true }),
    emit("conversation:list", {}),
    emit("typing", { conversationId, typing: false }),
  ]);
  for (let i = 0; i < 20; i++) await peer.request("message:send", { clientMsgId: uniqueId("r"), conversationId, content: `reply ${i}` });
  // Reading as the replies scroll into view, then a reconnect's gap-fill (one conversation
  // here, asked 30 times, stands in for 30 conversations).
  for (const m of me.received) await emit("message:read", { messageIds: [m.id] });
  await Promise.all([
    emit("conversation:list", {}),
    ...Array.from({ length: 30 }, () => emit("message:history", { conversationId, afterSeq: 0, limit: 100 })),
  ]);
  me.close();
  peer.close();
  return tally;
}

/** A script sending as fast as the server answers, 20 in flight, for `seconds`. */
async function flooder(server: RunningTicks, seconds = 10): Promise<Tally & { acceptedPerSec: number }> {
  const { me, peer, peerId } = await pair(server, "flood");
  const { emit, tally } = counter(me);
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (performance.now() < until) await emit("message:send", { clientMsgId: uniqueId("f"), to: peerId, content: "spam" });
    }),
  );
  me.close();
  peer.close();
  return { ...tally, acceptedPerSec: (tally.events - tally.limited) / tally.seconds };
}

export async function runRateLimit(ctx: Context): Promise<ScenarioResult> {
  const db = await benchDatabase();
  // RATE_LIMIT_* and REDIS_URL come from the environment; where the server runs does not.
  const config = loadConfig({ ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent", AUTH_MODE: "dev", DATABASE_URL: db.url });
  const server = await startTicks(config, { log: createLogger("silent") });
  const runs: { label: string; tally: Tally }[] = [];
  const row = ({ label, tally: t }: { label: string; tally: Tally }): Row => ({
    label,
    cells: [t.events, t.seconds, t.events / t.seconds, t.limited.toLocaleString("en-US")], // a count, not "0.00"
  });
  try {
    for (const rtt of [10, 5, 2, 0]) {
      for (let run = 1; run <= 3; run++) runs.push({ label: `plain sender, rtt ${rtt} ms, run ${run}`, tally: await plainSender(server, rtt) });
    }
    for (let run = 1; run <= 3; run++) runs.push({ label: `busy human, run ${run}`, tally: await busyHuman(server) });
    const f = await flooder(server);
    runs.push({ label: "flooder (20 in flight, 10 s)", tally: f });
    runs.forEach((r) => ctx.log(`rate-limit: ${r.label}: ${r.tally.events} events, RATE_LIMITED ${r.tally.limited}`));
    const section: Section = {
      title: `rate-limit: RATE_LIMIT_EVENTS_PER_SEC=${config.rateLimitPerSec} RATE_LIMIT_BURST=${config.rateLimitBurst}, one in-process server`,
      columns: ["events", "seconds", "events/s", "RATE_LIMITED"],
      rows: runs.map(row),
      notes: [`flooder accepted ${f.acceptedPerSec.toFixed(0)} events a second`],
    };
    return { sections: [section], data: { rateLimitPerSec: config.rateLimitPerSec, rateLimitBurst: config.rateLimitBurst, runs } };
  } finally {
    await server.stop();
    await db.drop();
  }
}
