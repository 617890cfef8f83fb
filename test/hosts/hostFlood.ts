/**
 * A flood through nginx, with the fault suite's clients and accounting, and what a host-scale
 * case needs beside: which host each client's socket is on, and what each side saw in a window.
 */
import Redis from "ioredis";
import { presenceDeadlinesKey } from "../../src/cluster/RedisPresenceTracker";
import { lastAckToLastDelivery, printFigures, settle, type Figures } from "../helpers/accounting";
import { planFlood, startFlood, startFloodClients, type FailoverRecipient, type FailoverSender, type FloodStats } from "../helpers/flood";
import { mintToken } from "../helpers/server";
import { waitFor } from "../helpers/wait";
import { JWT_SECRET, type Bed } from "./bed";
import type { HostName } from "./network";

export const SENDERS = 50;
export const RECIPIENTS = 50;

export type HostFlood = {
  senders: FailoverSender[];
  recipients: FailoverRecipient[];
  stats: FloodStats;
  done: Promise<void>;
  total: number;
  close(): void;
};

/** 50 senders and 50 recipients connected through nginx only, then `perSender` messages each. */
export async function startHostFlood(bed: Bed, perSender: number, tag: string): Promise<HostFlood> {
  const clients: { close(): void }[] = [];
  const auth = async (userId: string) => ({ token: await mintToken(userId, { secret: JWT_SECRET }) });
  // The SDK's own ack timeout (10 s), above DATABASE_TIMEOUT_MS: the server's UNAVAILABLE
  // comes back before the client gives up on the packet and sends it again.
  const { senders, recipients } = await startFloodClients([bed.lbUrl], { senders: SENDERS, recipients: RECIPIENTS }, clients, {
    auth,
    ackTimeoutMs: 10_000,
  });
  const intents = planFlood(
    senders,
    recipients.map((r) => r.userId),
    perSender,
    tag,
  );
  const { stats, done } = startFlood(senders, intents);
  return { senders, recipients, stats, done, total: intents.length, close: () => clients.forEach((c) => c.close()) };
}

export async function untilAcked(flood: HostFlood, share: number): Promise<void> {
  await waitFor(() => flood.stats.acked >= flood.total * share, () => `the flood under way (${flood.stats.acked} of ${flood.total} acknowledged)`, 180_000);
}

/**
 * Which host each user's sockets are on now: the presence entries carry the worker's node id
 * (`hostname:pid:random`), and each host's pids are those of its namespace.
 */
export async function hostsOfUsers(bed: Bed): Promise<Map<string, HostName>> {
  const pidHost = new Map<number, HostName>();
  for (const host of bed.appHosts) for (const pid of await bed.pids(host)) pidHost.set(pid, host);
  const redis = new Redis(bed.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    const entries = await redis.zrange(presenceDeadlinesKey("ticks"), "0", "-1");
    const result = new Map<string, HostName>();
    for (const entry of entries) {
      const [userId, connection] = entry.split(" ") as [string, string];
      const pid = Number(connection.split("/")[0]!.split(":")[1]);
      const host = pidHost.get(pid);
      if (host) result.set(userId, host);
    }
    return result;
  } finally {
    redis.disconnect();
  }
}

/** What the clients on `side` saw between `from` and `to`: sends acknowledged, messages received. */
export function window(flood: HostFlood, users: Set<string>, from: number, to: number) {
  const acked = flood.stats.intents.filter((i) => users.has(i.from) && i.ackedAt !== undefined && i.ackedAt >= from && i.ackedAt <= to).length;
  let received = 0;
  for (const r of flood.recipients) {
    if (!users.has(r.userId)) continue;
    for (const at of r.arrivedAt.values()) if (at >= from && at <= to) received++;
  }
  const unavailable = flood.stats.intents.filter((i) => users.has(i.from)).reduce((n, i) => n + i.unavailable, 0);
  return { acked, received, unavailable };
}

/** Waits for the senders, settles the accounting and prints the FIGURES line; returns the figures. */
export async function finish(
  bed: Bed,
  flood: HostFlood,
  name: string,
  extra: () => Record<string, string | number>,
): Promise<{ figures: Figures; finished: boolean; settled: boolean; lastAckToLastDeliveryMs: number }> {
  const finished = await Promise.race([flood.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 240_000))]);
  const { figures, settledMs, settled } = await settle(bed.pg, flood.stats, flood.recipients, 90_000);
  const recovery = await lastAckToLastDelivery(bed.pg, flood.stats, flood.recipients);
  printFigures(name, figures, {
    floodMs: (flood.stats.finishedAt ?? Date.now()) - flood.stats.startedAt,
    settleMs: settledMs,
    lastAckToLastDeliveryMs: recovery.ms,
    senderFailovers: flood.senders.reduce((n, s) => n + s.failovers, 0),
    recipientFailovers: flood.recipients.reduce((n, r) => n + r.failovers, 0),
    retriesExhausted: flood.senders.reduce((n, s) => n + s.exhausted, 0),
    liveRaw: flood.recipients.reduce((n, r) => n + r.liveRaw, 0),
    backlogRaw: flood.recipients.reduce((n, r) => n + r.backlogRaw, 0),
    failoverReasons: reasons([...flood.senders, ...flood.recipients]),
    nginxErrors: bed.nginxErrors(),
    ...extra(),
  });
  return { figures, finished, settled, lastAckToLastDeliveryMs: recovery.ms };
}

/** The database is the bed's for the whole suite: each case starts from empty tables. */
export async function emptyTables(bed: Bed): Promise<void> {
  await bed.pg.query("TRUNCATE messages, message_delivery, conversations, conversation_members CASCADE");
}

/** The failover reasons of all clients, most frequent first. */
function reasons(clients: { failoverReasons: Map<string, number> }[]): string {
  const all = new Map<string, number>();
  for (const c of clients) for (const [r, n] of c.failoverReasons) all.set(r, (all.get(r) ?? 0) + n);
  return JSON.stringify(Object.fromEntries([...all].sort((a, b) => b[1] - a[1]).slice(0, 5)));
}
