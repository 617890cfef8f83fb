import type { Knex } from "knex";
import { AppError, type Message } from "../protocol";
import type { AppendRequest, AppendResult } from "../messaging/ports";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";
import type { BatchOutcome } from "./TickBatcher";

/** A concurrent retry committed the same (sender, clientMsgId) first: redo the batch. */
export class LostDuplicateRace extends Error {}

/** Direct conversations are keyed by the sorted pair; a space cannot occur in a user id. */
export const directKey = (a: string, b: string): string => (a < b ? `${a} ${b}` : `${b} ${a}`);

const senderKey = (r: { from: string; clientMsgId: string }) => `${r.from}\n${r.clientMsgId}`;

type Accepted = { index: number; req: AppendRequest; conversationId: string; to: string | null; seq?: number };

/**
 * Stores a batch of messages in one transaction: a handful of statements whatever the
 * batch size, one COMMIT for all. Per conversation, the row lock taken on `conversations`
 * hands out a contiguous seq range in request order (gap-free: a rollback undoes it).
 * Returns one outcome per request, in order; refusals (NOT_FOUND, FORBIDDEN) are per request.
 */
export async function appendBatch(trx: Knex.Transaction, reqs: AppendRequest[]): Promise<BatchOutcome<AppendResult>[]> {
  const outcomes: BatchOutcome<AppendResult>[] = new Array(reqs.length);

  // 1. Retries of messages already stored answer the original, and take no seq.
  // Both lists as ANY: one scan of the (from_user_id, client_msg_id) index. It may return a
  // pair nobody asked for (sender of one, id of another); the map lookup ignores those.
  const existing = rowsOf<MessageRow>(
    await trx.raw(
      `SELECT ${MESSAGE_COLUMNS} FROM messages m
       WHERE m.from_user_id = ANY(?::text[]) AND m.client_msg_id = ANY(?::text[])`,
      [[...new Set(reqs.map((r) => r.from))], [...new Set(reqs.map((r) => r.clientMsgId))]],
    ),
  );
  const originals = new Map(
    existing.map((row) => [senderKey({ from: row.from_user_id, clientMsgId: row.client_msg_id }), toMessage(row)]),
  );
  const firstInBatch = new Map<string, number>();
  const fresh: number[] = [];
  reqs.forEach((req, i) => {
    const key = senderKey(req);
    const original = originals.get(key);
    if (original) outcomes[i] = { ok: true, value: { duplicate: true, message: original } };
    else if (firstInBatch.has(key)) return; // the same retry twice in one batch: settled below
    else {
      firstInBatch.set(key, i);
      fresh.push(i);
    }
  });

  // 2. Where each message goes: direct conversations (created on first use) or given ones.
  const accepted: Accepted[] = [];
  const directIds = await resolveDirect(trx, fresh.map((i) => reqs[i]!).filter((r) => "to" in r.target));
  const given = await loadConversations(
    trx,
    fresh.map((i) => reqs[i]!.target).flatMap((t) => ("conversationId" in t ? [t.conversationId] : [])),
  );
  for (const i of fresh) {
    const req = reqs[i]!;
    if ("to" in req.target) {
      accepted.push({ index: i, req, conversationId: directIds.get(directKey(req.from, req.target.to))!, to: req.target.to });
      continue;
    }
    const conversation = given.get(req.target.conversationId);
    if (!conversation) outcomes[i] = { ok: false, error: new AppError("NOT_FOUND", "no such conversation") };
    else if (!conversation.members.includes(req.from)) {
      outcomes[i] = { ok: false, error: new AppError("FORBIDDEN", "not a member of this conversation") };
    } else {
      const to = conversation.kind === "direct" ? (conversation.members.find((m) => m !== req.from) ?? null) : null;
      accepted.push({ index: i, req, conversationId: req.target.conversationId, to });
    }
  }

  if (accepted.length > 0) {
    await allocateSeq(trx, accepted);
    const recipients = await insertMessages(trx, accepted);
    for (const a of accepted) {
      outcomes[a.index] = {
        ok: true,
        value: { duplicate: false, message: messageOf(a), recipients: recipients.get(a.req.id) ?? [] },
      };
    }
  }

  // Same retry twice in one batch: the second answers what the first got.
  reqs.forEach((req, i) => {
    if (outcomes[i]) return;
    const first = outcomes[firstInBatch.get(senderKey(req))!]!;
    outcomes[i] = first.ok ? { ok: true, value: { duplicate: true, message: first.value.message } } : first;
  });
  return outcomes;
}

async function resolveDirect(trx: Knex.Transaction, reqs: AppendRequest[]): Promise<Map<string, string>> {
  const pairs = new Map<string, { id: string; from: string; to: string; at: Date }>();
  for (const r of reqs) {
    const to = (r.target as { to: string }).to;
    const key = directKey(r.from, to);
    if (!pairs.has(key)) pairs.set(key, { id: r.id, from: r.from, to, at: r.createdAt });
  }
  if (pairs.size === 0) return new Map();
  // Sorted, so two batches creating the same pairs take the index locks in the same order.
  const keys = [...pairs.keys()].sort();
  const found = rowsOf<{ conversation_id: string; direct_key: string }>(
    await trx.raw(`SELECT conversation_id, direct_key FROM conversations WHERE direct_key = ANY(?::text[])`, [keys]),
  );
  const ids = new Map(found.map((r) => [r.direct_key, r.conversation_id]));
  const missing = keys.filter((k) => !ids.has(k)).map((k) => ({ key: k, ...pairs.get(k)! }));
  if (missing.length === 0) return ids; // the steady state: one round trip
  // First message between these users: the conversation, its two members and their
  // directory entries, in one statement. A concurrent batch may create the same pair:
  // ON CONFLICT leaves its row, which the final SELECT then finds.
  await trx.raw(
    `WITH v AS (
       SELECT * FROM unnest(?::uuid[], ?::text[], ?::timestamptz[], ?::text[], ?::text[]) AS v(id, key, at, a, b)
     ), created AS (
       INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by)
       SELECT id, 'direct', key, at, a FROM v ORDER BY key
       ON CONFLICT (direct_key) DO NOTHING RETURNING conversation_id
     ), members AS (
       INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       SELECT v.id, u.user_id, v.at FROM v JOIN created c ON c.conversation_id = v.id
       CROSS JOIN LATERAL (VALUES (v.a), (v.b)) AS u(user_id)
     )
     INSERT INTO users (user_id) SELECT DISTINCT u FROM v, LATERAL (VALUES (v.a), (v.b)) AS x(u)
     ON CONFLICT (user_id) DO NOTHING`,
    [
      missing.map((m) => m.id),
      missing.map((m) => m.key),
      missing.map((m) => m.at.toISOString()),
      missing.map((m) => m.from),
      missing.map((m) => m.to),
    ],
  );
  const all = rowsOf<{ conversation_id: string; direct_key: string }>(
    await trx.raw(`SELECT conversation_id, direct_key FROM conversations WHERE direct_key = ANY(?::text[])`, [
      missing.map((m) => m.key),
    ]),
  );
  for (const r of all) ids.set(r.direct_key, r.conversation_id);
  return ids;
}

async function loadConversations(
  trx: Knex.Transaction,
  ids: string[],
): Promise<Map<string, { kind: string; members: string[] }>> {
  if (ids.length === 0) return new Map();
  const rows = rowsOf<{ conversation_id: string; kind: string; user_id: string | null }>(
    await trx.raw(
      `SELECT c.conversation_id, c.kind, cm.user_id FROM conversations c
       LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id
       WHERE c.conversation_id = ANY(?::uuid[])`,
      [[...new Set(ids)]],
    ),
  );
  const map = new Map<string, { kind: string; members: string[] }>();
  for (const r of rows) {
    const entry = map.get(r.conversation_id) ?? { kind: r.kind, members: [] };
    if (r.user_id) entry.members.push(r.user_id);
    map.set(r.conversation_id, entry);
  }
  return map;
}

/**
 * Hands out seq ranges in one statement: the CTE locks the batch's conversations in id
 * order (so concurrent batches cannot deadlock), the UPDATE moves each counter by the
 * number of messages it gets, and RETURNING gives the first seq of each range.
 */
async function allocateSeq(trx: Knex.Transaction, accepted: Accepted[]): Promise<void> {
  const counts = new Map<string, { n: number; at: Date }>();
  for (const a of accepted) {
    const c = counts.get(a.conversationId) ?? { n: 0, at: a.req.createdAt };
    c.n++;
    c.at = a.req.createdAt;
    counts.set(a.conversationId, c);
  }
  const ids = [...counts.keys()].sort();
  const bumped = rowsOf<{ conversation_id: string; first_seq: string | number }>(
    await trx.raw(
      `WITH locked AS (
         SELECT conversation_id FROM conversations WHERE conversation_id = ANY(?::uuid[])
         ORDER BY conversation_id FOR UPDATE
       )
       UPDATE conversations c SET last_seq = c.last_seq + v.n, last_message_at = v.at
       FROM locked, unnest(?::uuid[], ?::int[], ?::timestamptz[]) AS v(id, n, at)
       WHERE c.conversation_id = locked.conversation_id AND c.conversation_id = v.id
       RETURNING c.conversation_id, c.last_seq - v.n + 1 AS first_seq`,
      [ids, ids, ids.map((id) => counts.get(id)!.n), ids.map((id) => counts.get(id)!.at.toISOString())],
    ),
  );
  const next = new Map(bumped.map((r) => [r.conversation_id, toNumber(r.first_seq)]));
  for (const a of accepted) {
    a.seq = next.get(a.conversationId)!;
    next.set(a.conversationId, a.seq + 1);
  }
}

/**
 * Inserts the messages and their delivery rows in one statement; returns each message's
 * recipients. Every message has at least one recipient (a conversation has two members or
 * more), so a message missing from the result lost its insert to a concurrent retry.
 */
async function insertMessages(trx: Knex.Transaction, accepted: Accepted[]): Promise<Map<string, string[]>> {
  const col = <T>(pick: (a: Accepted) => T) => accepted.map(pick);
  const deliveries = rowsOf<{ message_id: string; recipient_id: string }>(
    await trx.raw(
      `WITH inserted AS (
         INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
           created_at, expires_at)
         SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[],
           ?::timestamptz[], ?::timestamptz[])
         ON CONFLICT (from_user_id, client_msg_id) DO NOTHING
         RETURNING message_id, conversation_id, seq, from_user_id
       )
       INSERT INTO message_delivery (message_id, recipient_id, status)
       SELECT m.message_id, cm.user_id, 'sent' FROM inserted m
       JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id <> m.from_user_id
       -- delivery_id then follows seq within each conversation: the backlog's order
       ORDER BY m.conversation_id, m.seq, cm.user_id
       RETURNING message_id, recipient_id`,
      [
        col((a) => a.req.id),
        col((a) => a.conversationId),
        col((a) => a.seq!),
        col((a) => a.req.from),
        col((a) => a.to),
        col((a) => a.req.clientMsgId),
        col((a) => a.req.content),
        col((a) => a.req.createdAt.toISOString()),
        col((a) => a.req.expiresAt.toISOString()),
      ] as Knex.RawBinding[],
    ),
  );
  const recipients = new Map<string, string[]>();
  for (const d of deliveries) {
    const list = recipients.get(d.message_id) ?? [];
    list.push(d.recipient_id);
    recipients.set(d.message_id, list);
  }
  if (recipients.size !== accepted.length) throw new LostDuplicateRace();
  return recipients;
}

function messageOf(a: Accepted): Message {
  return {
    id: a.req.id,
    clientMsgId: a.req.clientMsgId,
    conversationId: a.conversationId,
    seq: a.seq!,
    from: a.req.from,
    to: a.to,
    content: a.req.content,
    createdAt: a.req.createdAt.toISOString(),
    expiresAt: a.req.expiresAt.toISOString(),
  };
}
