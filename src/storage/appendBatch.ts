import type { Knex } from "knex";
import { v7 as uuidv7 } from "uuid";
import type { Message } from "../protocol";
import type { AppendRequest, AppendResult } from "../messaging/ports";
import { directKey, routeToConversation, type ConversationFacts } from "../messaging/routing";
import { runPrepared, statement } from "./prepared";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";
import type { BatchOutcome } from "./GroupCommit";

/** A concurrent retry committed the same (sender, clientMsgId) first: redo the batch. */
export class LostDuplicateRace extends Error {}

const senderKey = (r: { from: string; clientMsgId: string }) => `${r.from}\n${r.clientMsgId}`;

/**
 * One request as the write statement sees it: `accept` false means routing refused it (it
 * is still probed, so a retry of an already stored message is answered as a duplicate).
 * A direct message carries its conversation's key; one to a given conversation, its id.
 */
export type BatchRow = {
  index: number;
  req: AppendRequest;
  accept: boolean;
  conversationId: string | null;
  directKey: string | null;
  to: string | null;
};

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Stores a batch of messages. In the steady state that is ONE statement (its own
 * transaction): it answers retries already stored, finds each direct conversation by its
 * key, hands out seq, inserts the messages and their delivery rows, and commits. Per
 * conversation, the row lock taken on `conversations` hands out a contiguous seq range in
 * request order, gap-free: any failure rolls the statement back whole. Only messages to a
 * given conversation (groups) need reads first (its members, for the routing rules), and
 * only a first message between two users a second write (the conversation is created,
 * then its messages go in). Every statement's cost follows the batch, not the table: each
 * lookup is one index probe per request. Returns one outcome per request, in order;
 * refusals (NOT_FOUND, FORBIDDEN, by the rules of messaging/routing) are per request.
 * Throws LostDuplicateRace when a concurrent retry got in first: run it again.
 */
export async function appendBatch(db: Knex, reqs: AppendRequest[], hot: Knex = db): Promise<BatchOutcome<AppendResult>[]> {
  const outcomes: BatchOutcome<AppendResult>[] = new Array(reqs.length);
  // The same retry twice in one batch: only the first goes to the database.
  const firstInBatch = new Map<string, number>();
  const firsts: number[] = [];
  reqs.forEach((req, i) => {
    const key = senderKey(req);
    if (firstInBatch.has(key)) return;
    firstInBatch.set(key, i);
    firsts.push(i);
  });

  const givenIds = firsts.flatMap((i) => {
    const t = reqs[i]!.target;
    return "conversationId" in t ? [t.conversationId] : [];
  });
  // Messages to a given conversation (groups) need its members before the write, for the
  // routing rules; stored retries are then answered by the same parallel reads (a retry is
  // answered before it is judged). A batch of direct messages goes straight to the write.
  let given = new Map<string, ConversationFacts>();
  let fresh = firsts;
  if (givenIds.length > 0) {
    const [existing, conversations] = await Promise.all([findStored(hot, firsts.map((i) => reqs[i]!)), loadConversations(db, givenIds)]);
    given = conversations;
    const originals = new Map(existing.map((row) => [senderKey({ from: row.from_user_id, clientMsgId: row.client_msg_id }), row]));
    fresh = firsts.filter((i) => {
      const original = originals.get(senderKey(reqs[i]!));
      if (original) outcomes[i] = { ok: true, value: { duplicate: true, message: toMessage(original) } };
      return !original;
    });
  }
  const rows: BatchRow[] = fresh.map((index) => {
    const req = reqs[index]!;
    if ("to" in req.target) {
      return { index, req, accept: true, conversationId: null, directKey: directKey(req.from, req.target.to), to: req.target.to };
    }
    const route = routeToConversation(req.from, given.get(req.target.conversationId));
    if (!route.ok) outcomes[index] = route;
    const to = route.ok ? route.to : null;
    return { index, req, accept: route.ok, conversationId: req.target.conversationId, directKey: null, to };
  });

  let unrouted = await write(hot, rows, outcomes);
  if (unrouted.length > 0) {
    // First messages between these users: create the conversations, then store them.
    await createDirect(db, unrouted);
    unrouted = await write(hot, unrouted, outcomes);
    if (unrouted.length > 0) throw new Error("direct conversation missing right after it was created");
  }

  // Same retry twice in one batch: the second answers what the first got.
  reqs.forEach((req, i) => {
    if (outcomes[i]) return;
    const first = outcomes[firstInBatch.get(senderKey(req))!]!;
    outcomes[i] = first.ok ? { ok: true, value: { duplicate: true, message: first.value.message } } : first;
  });
  return outcomes;
}

/** Runs the write statement for `rows`, fills their outcomes; returns the direct ones with no conversation yet. */
async function write(db: Knex, rows: BatchRow[], outcomes: BatchOutcome<AppendResult>[]): Promise<BatchRow[]> {
  let result: WriteRow[];
  try {
    result = await runPrepared<WriteRow>(db, WRITE, writeValues(rows));
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new LostDuplicateRace();
    throw err;
  }
  const stored = new Map<string, { seq: number; conversationId: string; recipients: string[] }>();
  const recipients: WriteRow[] = [];
  for (const r of result) {
    if (r.ord !== null) {
      // A retry of a message stored earlier: the original answers it.
      const row = rows[toNumber(r.ord) - 1]!;
      outcomes[row.index] = { ok: true, value: { duplicate: true, message: toMessage(r.original!) } };
    } else if (r.seq !== null) {
      stored.set(r.message_id, { seq: toNumber(r.seq), conversationId: r.conversation_id!, recipients: [] });
    } else recipients.push(r);
  }
  for (const r of recipients) stored.get(r.message_id)!.recipients.push(r.recipient!);
  const unrouted: BatchRow[] = [];
  for (const row of rows) {
    if (!row.accept || outcomes[row.index]) continue;
    const s = stored.get(row.req.id);
    if (!s) {
      unrouted.push(row);
      continue;
    }
    outcomes[row.index] = { ok: true, value: { duplicate: false, message: messageOf(row, s.seq, s.conversationId), recipients: s.recipients } };
  }
  return unrouted;
}

/**
 * First messages between these users: each conversation, its two members and their
 * directory entries, in one statement. A concurrent batch may create the same pair:
 * ON CONFLICT leaves its row, which the next write finds by its key. Sorted, so two
 * batches creating the same pairs take the index locks in the same order.
 */
async function createDirect(db: Knex, rows: BatchRow[]): Promise<void> {
  const pairs = new Map<string, { id: string; from: string; to: string; at: Date }>();
  for (const r of rows) {
    // An id of its own, not the first message's: nobody should learn one from the other.
    if (!pairs.has(r.directKey!)) pairs.set(r.directKey!, { id: uuidv7(), from: r.req.from, to: r.to!, at: r.req.createdAt });
  }
  const missing = [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, p]) => ({ key, ...p }));
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
}

/** Stored messages for these exact (sender, clientMsgId) pairs: one probe of the unique index per pair. */
export const FIND_STORED = statement(
  "find_stored",
  `SELECT ${MESSAGE_COLUMNS} FROM unnest($1::text[], $2::text[]) AS p(sender, client_msg_id)
   JOIN messages m ON m.from_user_id = p.sender AND m.client_msg_id = p.client_msg_id`,
);

function findStored(db: Knex, reqs: AppendRequest[]): Promise<MessageRow[]> {
  return runPrepared<MessageRow>(db, FIND_STORED, [reqs.map((r) => r.from), reqs.map((r) => r.clientMsgId)]);
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
 * The write: answer retries already stored (one probe of the unique index per request),
 * find direct conversations by key, lock the batch's conversations in id order (concurrent
 * batches cannot deadlock), move each seq counter by its number of messages, number the
 * messages in request order from there, insert them, then their delivery rows in seq
 * order (so delivery_id follows seq within a conversation: the backlog's order). Returns
 * the stored originals (with `ord`, the request's position), each new message's
 * conversation and seq, and each of its delivery rows' recipient. A unique violation (a concurrent retry stored the same
 * clientMsgId first) undoes the whole statement, seq included.
 */
export const WRITE = statement(
  "append",
  `WITH v AS (
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[],
       $8::timestamptz[], $9::timestamptz[], $10::bool[])
       WITH ORDINALITY AS v(id, sender, recipient, given_id, direct_key, client_msg_id, content, created_at, expires_at,
         accept, ord)
   ), stored AS (
     SELECT v.ord, to_jsonb(m) AS original FROM v
     JOIN messages m ON m.from_user_id = v.sender AND m.client_msg_id = v.client_msg_id
   ), routed AS (
     SELECT v.*, coalesce(v.given_id, d.conversation_id) AS conversation_id
     FROM v LEFT JOIN conversations d ON d.direct_key = v.direct_key
     WHERE v.accept AND coalesce(v.given_id, d.conversation_id) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = v.ord)
   ), counts AS (
     SELECT conversation_id, count(*)::int AS n, max(created_at) AS at FROM routed GROUP BY conversation_id
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
     SELECT r.*, b.base + row_number() OVER (PARTITION BY r.conversation_id ORDER BY r.ord) AS seq
     FROM routed r JOIN bumped b ON b.conversation_id = r.conversation_id
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
   )
   SELECT s.ord, NULL::uuid AS message_id, NULL::uuid AS conversation_id, NULL::bigint AS seq, NULL::text AS recipient,
     s.original
   FROM stored s
   UNION ALL
   SELECT NULL, message_id, conversation_id, seq, NULL, NULL FROM inserted
   UNION ALL
   SELECT NULL, message_id, NULL, NULL, recipient_id, NULL FROM delivered`,
);

/** One of: a stored original (`ord` set), a new message (`seq` set), or one of its recipients. */
type WriteRow = {
  ord: string | number | null;
  message_id: string;
  conversation_id: string | null;
  seq: string | number | null;
  recipient: string | null;
  original: MessageRow | null;
};

export function writeValues(rows: BatchRow[]): unknown[] {
  const col = <T>(pick: (r: BatchRow) => T) => rows.map(pick);
  return [
    col((r) => r.req.id),
    col((r) => r.req.from),
    col((r) => r.to),
    col((r) => r.conversationId),
    col((r) => r.directKey),
    col((r) => r.req.clientMsgId),
    col((r) => r.req.content),
    col((r) => r.req.createdAt.toISOString()),
    col((r) => r.req.expiresAt.toISOString()),
    col((r) => r.accept),
  ];
}

function messageOf(row: BatchRow, seq: number, conversationId: string): Message {
  const { req } = row;
  return {
    id: req.id,
    clientMsgId: req.clientMsgId,
    conversationId,
    seq,
    from: req.from,
    to: row.to,
    content: req.content,
    createdAt: req.createdAt.toISOString(),
    expiresAt: req.expiresAt.toISOString(),
  };
}
