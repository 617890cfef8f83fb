import type { Knex } from "knex";
import { v7 as uuidv7 } from "uuid";
import type { Message } from "../protocol";
import type { AppendRequest, AppendResult } from "../messaging/ports";
import { directKey, routeToConversation, type ConversationFacts } from "../messaging/routing";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";
import type { BatchOutcome } from "./GroupCommit";

/** A concurrent retry committed the same (sender, clientMsgId) first: redo the batch. */
export class LostDuplicateRace extends Error {}

const senderKey = (r: { from: string; clientMsgId: string }) => `${r.from}\n${r.clientMsgId}`;

export type AppendOptions = {
  /**
   * Push notifications on: each recipient with a pushkey gets a push outbox row, due this
   * long after the message's createdAt, in the same statement as the message. Unset: the
   * statement has no push part at all.
   */
  pushDelayMs?: number;
};

type Accepted = { index: number; req: AppendRequest; conversationId: string; to: string | null };

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Stores a batch of messages: three reads in parallel, then ONE statement that hands out
 * seq, inserts the messages and their delivery rows, and commits (a single statement is
 * its own transaction). Per conversation, the row lock taken on `conversations` hands out
 * a contiguous seq range in request order, gap-free: any failure rolls the statement back
 * whole. Returns one outcome per request, in order; refusals (NOT_FOUND, FORBIDDEN, by the
 * rules of messaging/routing) are per request. Throws LostDuplicateRace when a concurrent retry got in first: run it again.
 */
export async function appendBatch(
  db: Knex,
  reqs: AppendRequest[],
  options: AppendOptions = {},
): Promise<BatchOutcome<AppendResult>[]> {
  const outcomes: BatchOutcome<AppendResult>[] = new Array(reqs.length);
  const directReqs = reqs.filter((r) => "to" in r.target);
  const givenIds = reqs.flatMap((r) => ("conversationId" in r.target ? [r.target.conversationId] : []));

  // 1. Three reads at once, on separate connections: retries already stored, direct
  // conversations, and the given conversations' members. Reads need no transaction: what
  // they decide is checked again by the constraints of the one write below.
  const [existing, directIds, given] = await Promise.all([
    findStored(db, reqs),
    resolveDirect(db, directReqs),
    loadConversations(db, givenIds),
  ]);
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
  for (const i of fresh) {
    const req = reqs[i]!;
    if ("to" in req.target) {
      accepted.push({ index: i, req, conversationId: directIds.get(directKey(req.from, req.target.to))!, to: req.target.to });
      continue;
    }
    const route = routeToConversation(req.from, given.get(req.target.conversationId));
    if (route.ok) accepted.push({ index: i, req, conversationId: req.target.conversationId, to: route.to });
    else outcomes[i] = route;
  }

  if (accepted.length > 0) {
    const stored = await insertMessages(db, accepted, options.pushDelayMs);
    for (const a of accepted) {
      const { seq, recipients } = stored.get(a.req.id)!;
      outcomes[a.index] = { ok: true, value: { duplicate: false, message: messageOf(a, seq), recipients } };
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

/**
 * Messages already stored for these (sender, clientMsgId) pairs. Both lists as ANY: one
 * scan of the unique index; a pair nobody asked for (sender of one request, id of another)
 * may come back and is ignored by the caller's lookup.
 */
function findStored(db: Knex, reqs: AppendRequest[]): Promise<MessageRow[]> {
  return db
    .raw(
      `SELECT ${MESSAGE_COLUMNS} FROM messages m
       WHERE m.from_user_id = ANY(?::text[]) AND m.client_msg_id = ANY(?::text[])`,
      [[...new Set(reqs.map((r) => r.from))], [...new Set(reqs.map((r) => r.clientMsgId))]],
    )
    .then((result) => rowsOf<MessageRow>(result));
}

async function resolveDirect(db: Knex, reqs: AppendRequest[]): Promise<Map<string, string>> {
  const pairs = new Map<string, { id: string; from: string; to: string; at: Date }>();
  for (const r of reqs) {
    const to = (r.target as { to: string }).to;
    const key = directKey(r.from, to);
    // An id of its own, not the first message's: nobody should learn one from the other.
    if (!pairs.has(key)) pairs.set(key, { id: uuidv7(), from: r.from, to, at: r.createdAt });
  }
  if (pairs.size === 0) return new Map();
  // Sorted, so two batches creating the same pairs take the index locks in the same order.
  const keys = [...pairs.keys()].sort();
  const found = rowsOf<{ conversation_id: string; direct_key: string }>(
    await db.raw(`SELECT conversation_id, direct_key FROM conversations WHERE direct_key = ANY(?::text[])`, [keys]),
  );
  const ids = new Map(found.map((r) => [r.direct_key, r.conversation_id]));
  const missing = keys.filter((k) => !ids.has(k)).map((k) => ({ key: k, ...pairs.get(k)! }));
  if (missing.length === 0) return ids; // the steady state: one round trip
  // First message between these users: the conversation, its two members and their
  // directory entries, in one statement. A concurrent batch may create the same pair:
  // ON CONFLICT leaves its row, which the final SELECT then finds.
  await db.raw(
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
    await db.raw(`SELECT conversation_id, direct_key FROM conversations WHERE direct_key = ANY(?::text[])`, [
      missing.map((m) => m.key),
    ]),
  );
  for (const r of all) ids.set(r.direct_key, r.conversation_id);
  return ids;
}

async function loadConversations(db: Knex, ids: string[]): Promise<Map<string, ConversationFacts>> {
  if (ids.length === 0) return new Map();
  const rows = rowsOf<{ conversation_id: string; kind: string; user_id: string | null }>(
    await db.raw(
      `SELECT c.conversation_id, c.kind, cm.user_id FROM conversations c
       LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id
       WHERE c.conversation_id = ANY(?::uuid[])`,
      [[...new Set(ids)]],
    ),
  );
  const map = new Map<string, ConversationFacts>();
  for (const r of rows) {
    const entry = map.get(r.conversation_id) ?? { kind: r.kind, members: [] };
    if (r.user_id) entry.members.push(r.user_id);
    map.set(r.conversation_id, entry);
  }
  return map;
}

/**
 * The one write: lock the batch's conversations in id order (concurrent batches cannot
 * deadlock), move each seq counter by its number of messages, number the messages in
 * request order from there, insert them, then their delivery rows in seq order (so
 * delivery_id follows seq within a conversation: the backlog's order). Returns each
 * message's seq and recipients. A unique violation (a concurrent retry stored the same
 * clientMsgId first) undoes the whole statement, seq included.
 */
async function insertMessages(
  db: Knex,
  accepted: Accepted[],
  pushDelayMs: number | undefined,
): Promise<Map<string, { seq: number; recipients: string[] }>> {
  const col = <T>(pick: (a: Accepted) => T) => accepted.map(pick);
  let rows: { message_id: string; recipient_id: string; seq: string | number }[];
  try {
    rows = rowsOf(
      await db.raw(
        `WITH v AS (
           SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::text[], ?::text[],
             ?::timestamptz[], ?::timestamptz[])
             WITH ORDINALITY AS v(id, conversation_id, sender, recipient, client_msg_id, content, created_at, expires_at, ord)
         ), counts AS (
           SELECT conversation_id, count(*)::int AS n, max(created_at) AS at FROM v GROUP BY conversation_id
         ), locked AS (
           SELECT conversation_id FROM conversations
           WHERE conversation_id IN (SELECT conversation_id FROM counts)
           ORDER BY conversation_id FOR UPDATE
         ), bumped AS (
           UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_message_at = counts.at
           FROM counts, locked
           WHERE c.conversation_id = counts.conversation_id AND c.conversation_id = locked.conversation_id
           RETURNING c.conversation_id, c.last_seq - counts.n AS base
         ), numbered AS (
           SELECT v.*, b.base + row_number() OVER (PARTITION BY v.conversation_id ORDER BY v.ord) AS seq
           FROM v JOIN bumped b ON b.conversation_id = v.conversation_id
         ), inserted AS (
           INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
             created_at, expires_at)
           SELECT id, conversation_id, seq, sender, recipient, client_msg_id, content, created_at, expires_at
           FROM numbered
           RETURNING message_id, conversation_id, seq, from_user_id
         ), delivered AS (
           INSERT INTO message_delivery (message_id, recipient_id, status)
           SELECT i.message_id, cm.user_id, 'sent' FROM inserted i
           JOIN conversation_members cm ON cm.conversation_id = i.conversation_id AND cm.user_id <> i.from_user_id
           ORDER BY i.conversation_id, i.seq, cm.user_id
           RETURNING message_id, recipient_id
         )${pushDelayMs === undefined ? "" : PUSH_OUTBOX_CTE}
         SELECT d.message_id, d.recipient_id, i.seq FROM delivered d JOIN inserted i ON i.message_id = d.message_id`,
        [
          col((a) => a.req.id),
          col((a) => a.conversationId),
          col((a) => a.req.from),
          col((a) => a.to),
          col((a) => a.req.clientMsgId),
          col((a) => a.req.content),
          col((a) => a.req.createdAt.toISOString()),
          col((a) => a.req.expiresAt.toISOString()),
          ...(pushDelayMs === undefined ? [] : [pushDelayMs]),
        ] as Knex.RawBinding[],
      ),
    );
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new LostDuplicateRace();
    throw err;
  }
  const stored = new Map<string, { seq: number; recipients: string[] }>();
  for (const r of rows) {
    const entry = stored.get(r.message_id) ?? { seq: toNumber(r.seq), recipients: [] };
    entry.recipients.push(r.recipient_id);
    stored.set(r.message_id, entry);
  }
  return stored;
}

/**
 * The push outbox part of the write (only when pushes are on): a row per delivery row
 * whose recipient has a pushkey, due PUSH_DELAY_MS after createdAt. Written by the same
 * statement as the message, it commits or rolls back with it: no stored message can miss
 * its push, and no push can name a message that was not stored. Its binding comes last.
 */
const PUSH_OUTBOX_CTE = `, pushes AS (
           INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
           SELECT d.message_id, d.recipient_id, n.due_at, n.due_at FROM delivered d
           JOIN (SELECT id, created_at + ? * interval '1 millisecond' AS due_at FROM numbered) n ON n.id = d.message_id
           WHERE EXISTS (SELECT 1 FROM pushkeys p WHERE p.user_id = d.recipient_id)
         )`;

function messageOf(a: Accepted, seq: number): Message {
  return {
    id: a.req.id,
    clientMsgId: a.req.clientMsgId,
    conversationId: a.conversationId,
    seq,
    from: a.req.from,
    to: a.to,
    content: a.req.content,
    createdAt: a.req.createdAt.toISOString(),
    expiresAt: a.req.expiresAt.toISOString(),
  };
}
