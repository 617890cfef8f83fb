/**
 * The final accounting of a flood: what the clients intended, were told and received,
 * against what the database holds; and the one-line FIGURES the report quotes.
 */
import type { Client } from "pg";
import type { FailoverRecipient } from "./failover";
import type { FloodStats } from "./flood";
import { sleep } from "./wait";

export type Figures = {
  sent: number;
  acknowledged: number;
  storedRows: number;
  delivered: number;
  expectedDeliveries: number;
  rawReceived: number;
  rawDuplicates: number;
  duplicateRows: number;
  lost: number;
  ackedLost: number;
  notStored: number;
  undelivered: number;
  misaddressed: number;
  okIdMismatch: number;
  strayRows: number;
  sentLeft: number;
  seqGaps: number;
  /**
   * First arrivals, backlog or live, with a lower seq than one already received (allowed
   * between a backlog and live messages, and for live ones across a failure: docs/protocol.md
   * "Ordering and gaps"; the live ones outside a fault window are asserted through
   * arrivalOrder.ts `liveInversions`).
   */
  seqInversions: number;
  /** Backlog messages out of seq order within one sync's pages (promised: none). */
  backlogInversions: number;
  /** Recipient conversations a client ordering by seq, as the SDK does, would not hold as 1..n in order (promised: none). */
  orderedIncomplete: number;
  duplicateReplies: number;
  unavailable: number;
  otherErrors: number;
};

/**
 * Compares what the clients intended, were told and received with what the database holds.
 * The database is private to the test, so every row in it came from this flood.
 */
export async function collectFigures(pg: Client, stats: FloodStats, recipients: FailoverRecipient[]): Promise<Figures> {
  const { rows } = await pg.query<{ message_id: string; from_user_id: string; client_msg_id: string; to_user_id: string | null }>(
    "SELECT message_id, from_user_id, client_msg_id, to_user_id FROM messages",
  );
  const byKey = new Map<string, string[]>();
  const ids = new Set<string>();
  for (const r of rows) {
    const key = `${r.from_user_id} ${r.client_msg_id}`;
    byKey.set(key, [...(byKey.get(key) ?? []), r.message_id]);
    ids.add(r.message_id);
  }
  let duplicateRows = 0;
  for (const list of byKey.values()) duplicateRows += list.length - 1;
  const intended = new Set(stats.intents.map((i) => `${i.from} ${i.clientMsgId}`));
  const strayRows = [...byKey.keys()].filter((k) => !intended.has(k)).length;
  let ackedLost = 0;
  let notStored = 0;
  let okIdMismatch = 0;
  for (const intent of stats.intents) {
    if ([...intent.okIds].some((id) => !ids.has(id))) ackedLost++;
    if (intent.okIds.size > 1) okIdMismatch++;
    if (!byKey.has(`${intent.from} ${intent.clientMsgId}`)) notStored++;
  }
  const expected = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!r.to_user_id) continue;
    const set = expected.get(r.to_user_id) ?? new Set<string>();
    set.add(r.message_id);
    expected.set(r.to_user_id, set);
  }
  let delivered = 0;
  let expectedDeliveries = 0;
  let undelivered = 0;
  let misaddressed = 0;
  let rawReceived = 0;
  let uniqueReceived = 0;
  let seqInversions = 0;
  let backlogInversions = 0;
  let orderedIncomplete = 0;
  const conversations = await messagesPerConversation(pg);
  for (const rcpt of recipients) {
    seqInversions += rcpt.seqInversions;
    backlogInversions += rcpt.order.backlogInversions;
    orderedIncomplete += rcpt.order.orderedIncomplete(conversations.get(rcpt.userId) ?? new Map()).length;
    const want = expected.get(rcpt.userId) ?? new Set<string>();
    expectedDeliveries += want.size;
    for (const id of want) {
      if (rcpt.received.has(id)) delivered++;
      else undelivered++;
    }
    for (const id of rcpt.received.keys()) if (!want.has(id)) misaddressed++;
    misaddressed += rcpt.misaddressed.length;
    rawReceived += rcpt.raw;
    uniqueReceived += rcpt.received.size;
  }
  const sentLeft = Number(
    (await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE status = 'sent'")).rows[0].n,
  );
  // Guarantee 4: per conversation, seq is exactly 1..n and the counter says n.
  const seqGaps = Number(
    (
      await pg.query(`
        SELECT count(*)::int AS n FROM conversations c
        LEFT JOIN (SELECT conversation_id, count(*) AS k, min(seq) AS lo, max(seq) AS hi FROM messages GROUP BY 1) m
          ON m.conversation_id = c.conversation_id
        WHERE COALESCE(m.k, 0) <> c.last_seq OR (m.k > 0 AND (m.lo <> 1 OR m.hi <> m.k))`)
    ).rows[0].n,
  );
  return {
    sent: stats.intents.length,
    acknowledged: stats.intents.filter((i) => i.okReplies > 0).length,
    storedRows: rows.length,
    delivered,
    expectedDeliveries,
    rawReceived,
    rawDuplicates: rawReceived - uniqueReceived,
    duplicateRows,
    lost: ackedLost + notStored + undelivered,
    ackedLost,
    notStored,
    undelivered,
    misaddressed,
    okIdMismatch,
    strayRows,
    sentLeft,
    seqGaps,
    seqInversions,
    backlogInversions,
    orderedIncomplete,
    duplicateReplies: stats.duplicateReplies,
    unavailable: stats.unavailable,
    otherErrors: stats.otherErrors,
  };
}

/** For each recipient of direct messages: how many messages each of its conversations holds. */
async function messagesPerConversation(pg: Client): Promise<Map<string, Map<string, number>>> {
  const { rows } = await pg.query<{ to_user_id: string; conversation_id: string; n: number }>(
    "SELECT to_user_id, conversation_id, count(*)::int AS n FROM messages WHERE to_user_id IS NOT NULL GROUP BY 1, 2",
  );
  const byRecipient = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const counts = byRecipient.get(r.to_user_id) ?? new Map<string, number>();
    counts.set(r.conversation_id, r.n);
    byRecipient.set(r.to_user_id, counts);
  }
  return byRecipient;
}

/** Polls until every recipient has everything addressed to it and no row is left 'sent'. */
export async function settle(
  pg: Client,
  stats: FloodStats,
  recipients: FailoverRecipient[],
  timeoutMs: number,
): Promise<{ figures: Figures; settledMs: number; settled: boolean }> {
  const started = Date.now();
  for (;;) {
    const figures = await collectFigures(pg, stats, recipients);
    const settled = figures.undelivered === 0 && figures.sentLeft === 0;
    if (settled || Date.now() - started > timeoutMs) return { figures, settledMs: Date.now() - started, settled };
    await sleep(500);
  }
}

/**
 * How long the last messages took to be delivered, from the last acknowledged send: to the
 * last first arrival at a recipient device, and to the last delivery receipt stored
 * (`delivered_at`: what the sender's ticks wait for; a message a device got whose receipt
 * died with a node counts only once it is stored again). Negative when all was in before
 * the last ack. Call it once settled.
 */
export async function lastAckToLastDelivery(pg: Client, stats: FloodStats, recipients: FailoverRecipient[]) {
  const lastAckAt = Math.max(...stats.intents.map((i) => i.ackedAt ?? 0));
  let lastArrivalAt = 0;
  for (const r of recipients) for (const at of r.arrivedAt.values()) lastArrivalAt = Math.max(lastArrivalAt, at);
  const { rows } = await pg.query<{ at: Date | null }>("SELECT max(delivered_at) AS at FROM message_delivery");
  const lastReceiptAt = rows[0]?.at?.getTime() ?? 0;
  return {
    arrivalMs: lastArrivalAt - lastAckAt,
    receiptMs: lastReceiptAt - lastAckAt,
    ms: Math.max(lastArrivalAt, lastReceiptAt) - lastAckAt,
    lastDeliveryAt: Math.max(lastArrivalAt, lastReceiptAt),
  };
}

/** One line, every figure, `key=value`: what the report quotes. */
export function printFigures(name: string, f: Figures, extra: Record<string, string | number> = {}): void {
  const main =
    `sent=${f.sent} acknowledged=${f.acknowledged} storedRows=${f.storedRows} ` +
    `delivered=${f.delivered}/${f.expectedDeliveries} rawReceived=${f.rawReceived} rawDuplicates=${f.rawDuplicates} ` +
    `duplicateRows=${f.duplicateRows} lost=${f.lost}`;
  const detail =
    `(ackedLost=${f.ackedLost} notStored=${f.notStored} undelivered=${f.undelivered} misaddressed=${f.misaddressed} ` +
    `okIdMismatch=${f.okIdMismatch} strayRows=${f.strayRows} sentLeft=${f.sentLeft} seqGaps=${f.seqGaps} seqInversions=${f.seqInversions} ` +
    `backlogInversions=${f.backlogInversions} orderedIncomplete=${f.orderedIncomplete} ` +
    `duplicateReplies=${f.duplicateReplies} unavailable=${f.unavailable} otherErrors=${f.otherErrors})`;
  const rest = Object.entries(extra)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  console.log(`      FIGURES [${name}] ${main} ${detail} ${rest}`);
}
