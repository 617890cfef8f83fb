import type { Knex } from "knex";
import { v7 as uuidv7 } from "uuid";
import { AppError, type Message, type MessageKind } from "../protocol";
import type { AppendRequest, AppendResult, EntryAppend, TextAppend } from "../messaging/ports";
import { judgeEntry } from "../messaging/entryRules";
import { directKey, routeToConversation, type ConversationFacts } from "../messaging/routing";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";
import type { BatchOutcome } from "./GroupCommit";

/** A concurrent retry committed the same (sender, clientMsgId) first: redo the batch. */
export class LostDuplicateRace extends Error {}

/**
 * A message this batch edits, deletes or reacts to changed (or went) between the reads and
 * the write, e.g. another node deleted it: nothing was written; redo the batch, whose reads
 * then see the new state.
 */
export class TargetChanged extends Error {}

const senderKey = (r: { from: string; clientMsgId: string }) => `${r.from}\n${r.clientMsgId}`;

export type AppendOptions = {
  /**
   * Push notifications on: each recipient with a pushkey gets a push outbox row, due this
   * long after the message's createdAt, in the same statement as the message. Unset: the
   * statement has no push part at all.
   */
  pushDelayMs?: number;
};

type Accepted = {
  index: number;
  req: AppendRequest;
  conversationId: string;
  to: string | null;
  /** What is stored: an entry whose target this batch deletes is stored erased (""). */
  content: string;
  expiresAt: Date;
  refId: string | null;
};

/** A text message an entry of this batch acts on, as the reads found it. */
type TargetRow = {
  message_id: string;
  conversation_id: string;
  from_user_id: string;
  kind: MessageKind;
  created_at: string;
  expires_at: string;
  deleted_at: string | null;
  /** Row version: every entry rewrites its target's row, so a new xmin means someone acted. */
  xmin: string;
  /** When deleted: its first delete entry, answered to a repeated delete. */
  delete_entry: MessageRow | null;
};

/** What this batch's entries do to one target, folded in request order. */
type TargetPlan = {
  row: TargetRow;
  content: string | null;
  editedAt: Date | null;
  /** Set by a delete: later entries of the batch see the message as deleted. */
  deletedAt: Date | null;
  deletedBy: number | null;
  /** Reactions to set, by user; null removes. */
  patch: Record<string, string | null>;
  entries: Accepted[];
};

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Stores a batch of messages and entries (edits, deletes, reactions): three reads in
 * parallel, then ONE statement that hands out seq, inserts the messages and their delivery
 * rows, applies the entries to the messages they act on, and commits (a single statement is
 * its own transaction). Per conversation, the row lock taken on `conversations` hands out
 * a contiguous seq range in request order, gap-free: any failure rolls the statement back
 * whole. Returns one outcome per request, in order; refusals (NOT_FOUND, FORBIDDEN, by the
 * rules of messaging/routing and messaging/entryRules) are per request and store nothing.
 * Throws LostDuplicateRace when a concurrent retry got in first, TargetChanged when an
 * acted-on message changed meanwhile: run it again.
 */
export async function appendBatch(
  db: Knex,
  reqs: AppendRequest[],
  options: AppendOptions = {},
): Promise<BatchOutcome<AppendResult>[]> {
  const outcomes: BatchOutcome<AppendResult>[] = new Array(reqs.length);
  const texts = reqs.filter((r): r is TextAppend => r.kind === "text");
  const directReqs = texts.filter((r) => "to" in r.target);
  const givenIds = texts.flatMap((r) => ("conversationId" in r.target ? [r.target.conversationId] : []));
  const refIds = reqs.flatMap((r) => (r.kind === "text" ? [] : [r.refId]));

  // 1. Three reads at once, on separate connections: retries already stored, direct
  // conversations, and the given conversations' members with the messages entries act on.
  // Reads need no transaction: what they decide is checked again by the one write below
  // (its constraints, and the acted-on messages' row versions).
  const [existing, directIds, { conversations: given, targets }] = await Promise.all([
    findStored(db, reqs),
    resolveDirect(db, directReqs),
    loadConversations(db, givenIds, refIds),
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

  // 2. Where each message goes: direct conversations (created on first use) or given ones;
  // an entry goes where its target is, if the rules allow it (judged in request order, so
  // an entry sees what earlier ones of the batch did to the same message).
  const accepted: Accepted[] = [];
  const plans = new Map<string, TargetPlan>();
  /** A delete repeated within the batch answers what the batch's first delete got. */
  const repeatOf = new Map<number, number>();
  for (const i of fresh) {
    const req = reqs[i]!;
    if (req.kind !== "text") {
      const row = targets.get(req.refId);
      const conversation = row && given.get(row.conversation_id);
      const plan = row && (plans.get(row.message_id) ?? newPlan(row));
      const verdict = judgeEntry(
        { kind: req.kind, from: req.from, at: req.createdAt, windowMs: req.windowMs },
        row && {
          kind: row.kind,
          from: row.from_user_id,
          createdAt: new Date(row.created_at),
          expiresAt: new Date(row.expires_at),
          deleted: row.deleted_at !== null || plan!.deletedBy !== null,
          actorIsMember: conversation?.members.includes(req.from) ?? false,
        },
      );
      if ("repeat" in verdict) {
        if (plan!.deletedBy !== null) repeatOf.set(i, plan!.deletedBy);
        else if (row!.delete_entry) outcomes[i] = { ok: true, value: { duplicate: true, message: toMessage(row!.delete_entry) } };
        else outcomes[i] = { ok: false, error: new AppError("FORBIDDEN", "the message was already deleted") };
      } else if (!verdict.ok) outcomes[i] = { ok: false, error: verdict.error };
      else {
        const route = routeToConversation(req.from, conversation); // ok: the actor is a member
        const a: Accepted = {
          index: i,
          req,
          conversationId: row!.conversation_id,
          to: route.ok ? route.to : null,
          content: req.content,
          expiresAt: new Date(row!.expires_at),
          refId: row!.message_id,
        };
        accepted.push(a);
        plans.set(row!.message_id, plan!);
        applyToPlan(plan!, a);
      }
      continue;
    }
    const text = { content: req.content, expiresAt: req.expiresAt, refId: null };
    if ("to" in req.target) {
      const conversationId = directIds.get(directKey(req.from, req.target.to))!;
      accepted.push({ index: i, req, conversationId, to: req.target.to, ...text });
      continue;
    }
    const route = routeToConversation(req.from, given.get(req.target.conversationId));
    if (route.ok) accepted.push({ index: i, req, conversationId: req.target.conversationId, to: route.to, ...text });
    else outcomes[i] = route;
  }

  if (accepted.length > 0) {
    const stored = await insertMessages(db, accepted, [...plans.values()], options.pushDelayMs);
    for (const a of accepted) {
      const { seq, recipients } = stored.get(a.req.id)!;
      outcomes[a.index] = { ok: true, value: { duplicate: false, message: messageOf(a, seq), recipients } };
    }
  }

  for (const [i, first] of repeatOf) {
    const o = outcomes[first]!;
    outcomes[i] = o.ok ? { ok: true, value: { duplicate: true, message: o.value.message } } : o;
  }
  // Same retry twice in one batch: the second answers what the first got.
  reqs.forEach((req, i) => {
    if (outcomes[i]) return;
    const first = outcomes[firstInBatch.get(senderKey(req))!]!;
    outcomes[i] = first.ok ? { ok: true, value: { duplicate: true, message: first.value.message } } : first;
  });
  return outcomes;
}

function newPlan(row: TargetRow): TargetPlan {
  return { row, content: null, editedAt: null, deletedAt: null, deletedBy: null, patch: {}, entries: [] };
}

function applyToPlan(plan: TargetPlan, a: Accepted): void {
  const req = a.req as EntryAppend;
  plan.entries.push(a);
  if (req.kind === "edit") {
    plan.content = req.content;
    plan.editedAt = req.createdAt;
  } else if (req.kind === "reaction") {
    plan.patch[req.from] = req.content === "" ? null : req.content;
  } else {
    plan.deletedAt = req.createdAt;
    plan.deletedBy = a.index;
    // The write below erases the entries already stored; this batch's own are stored erased.
    for (const e of plan.entries) if (e !== a) e.content = "";
  }
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

async function resolveDirect(db: Knex, reqs: TextAppend[]): Promise<Map<string, string>> {
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

type Conversations = Map<string, ConversationFacts>;

/**
 * The given conversations with their members; with entries in the batch, also the messages
 * they act on and those messages' conversations, in the same round trip.
 */
async function loadConversations(
  db: Knex,
  ids: string[],
  refIds: string[],
): Promise<{ conversations: Conversations; targets: Map<string, TargetRow> }> {
  const conversations: Conversations = new Map();
  const targets = new Map<string, TargetRow>();
  if (ids.length === 0 && refIds.length === 0) return { conversations, targets };
  const members = `SELECT c.conversation_id, c.kind, cm.user_id, NULL::jsonb AS target FROM conversations c
       LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id`;
  const rows = rowsOf<{ conversation_id: string; kind: string | null; user_id: string | null; target: TargetRow | null }>(
    refIds.length === 0
      ? await db.raw(`${members} WHERE c.conversation_id = ANY(?::uuid[])`, [[...new Set(ids)]])
      : await db.raw(
          // Rows of two shapes in one answer: members (target NULL), then one per target.
          // A deleted target brings its first delete entry along, for a repeated delete.
          `WITH t AS (
             SELECT m.message_id, m.conversation_id, m.from_user_id, m.kind, m.created_at, m.expires_at, m.deleted_at,
               m.xmin::text AS xmin,
               CASE WHEN m.deleted_at IS NOT NULL THEN (
                 SELECT to_jsonb(e) FROM messages e
                 WHERE e.ref_id = m.message_id AND e.ref_id IS NOT NULL AND e.kind = 'delete' ORDER BY e.seq LIMIT 1
               ) END AS delete_entry
             FROM messages m WHERE m.message_id = ANY(?::uuid[])
           )
           ${members}
           WHERE c.conversation_id IN (SELECT unnest(?::uuid[]) UNION SELECT conversation_id FROM t)
           UNION ALL
           SELECT t.conversation_id, NULL, NULL, to_jsonb(t) FROM t`,
          [[...new Set(refIds)], [...new Set(ids)]],
        ),
  );
  for (const r of rows) {
    if (r.target) {
      targets.set(r.target.message_id, r.target);
      continue;
    }
    const entry = conversations.get(r.conversation_id) ?? { kind: r.kind!, members: [] };
    if (r.user_id) entry.members.push(r.user_id);
    conversations.set(r.conversation_id, entry);
  }
  return { conversations, targets };
}

/**
 * The one write. In order of the CTEs:
 * - `v`: the batch's messages and entries, in request order; `t`: per acted-on message, what
 *   the batch's entries do to it (folded by the caller) and the row version the reads saw.
 * - `unchanged`: locks the acted-on messages and checks that none changed or went since the
 *   reads. Otherwise `w` is empty and nothing below writes anything (the caller redoes the
 *   batch): an entry is never judged on a stale state, and a delete never misses an edit
 *   committed by another node after this statement's snapshot.
 * - lock the batch's conversations in id order (concurrent batches cannot deadlock), move
 *   each seq counter by its number of messages, number the messages in request order from
 *   there, insert them, then their delivery rows in seq order (so delivery_id follows seq
 *   within a conversation: the backlog's order).
 * - `acted`: the targets' new state (content, editedAt, reactions; a delete empties them);
 *   `erased`: a delete empties the content of the entries already stored for its message.
 * Returns each message's seq and recipients. A unique violation (a concurrent retry stored
 * the same clientMsgId first) undoes the whole statement, seq included.
 */
async function insertMessages(
  db: Knex,
  accepted: Accepted[],
  plans: TargetPlan[],
  pushDelayMs: number | undefined,
): Promise<Map<string, { seq: number; recipients: string[] }>> {
  const col = <T>(pick: (a: Accepted) => T) => accepted.map(pick);
  const plan = <T>(pick: (p: TargetPlan) => T) => plans.map(pick);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  let rows: { message_id: string; recipient_id: string; seq: string | number }[];
  try {
    rows = rowsOf(
      await db.raw(
        `WITH v AS (
           SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::text[], ?::text[],
             ?::timestamptz[], ?::timestamptz[], ?::text[], ?::uuid[])
             WITH ORDINALITY AS v(id, conversation_id, sender, recipient, client_msg_id, content, created_at, expires_at,
               kind, ref_id, ord)
         ), t AS (
           SELECT * FROM unnest(?::uuid[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[], ?::jsonb[])
             AS t(id, seen_xmin, content, edited_at, deleted_at, patch)
         ), current AS MATERIALIZED (
           -- FOR UPDATE waits for a concurrent writer and then returns the row as it committed it.
           SELECT m.message_id, m.xmin::text AS xmin FROM messages m
           WHERE m.message_id IN (SELECT id FROM t) AND m.deleted_at IS NULL
           ORDER BY m.message_id FOR UPDATE
         ), unchanged AS MATERIALIZED (
           SELECT count(*) = (SELECT count(*) FROM t) AS ok
           FROM current c JOIN t ON t.id = c.message_id AND t.seen_xmin = c.xmin
         ), w AS (
           SELECT v.* FROM v, unchanged WHERE unchanged.ok
         ), counts AS (
           -- Only text moves a conversation up the list; every kind takes a seq.
           SELECT conversation_id, count(*)::int AS n, max(created_at) FILTER (WHERE kind = 'text') AS text_at
           FROM w GROUP BY conversation_id
         ), locked AS (
           SELECT conversation_id FROM conversations
           WHERE conversation_id IN (SELECT conversation_id FROM counts)
           ORDER BY conversation_id FOR UPDATE
         ), bumped AS (
           UPDATE conversations c SET last_seq = c.last_seq + counts.n,
             last_message_at = COALESCE(counts.text_at, c.last_message_at)
           FROM counts, locked
           WHERE c.conversation_id = counts.conversation_id AND c.conversation_id = locked.conversation_id
           RETURNING c.conversation_id, c.last_seq - counts.n AS base
         ), numbered AS (
           SELECT w.*, b.base + row_number() OVER (PARTITION BY w.conversation_id ORDER BY w.ord) AS seq
           FROM w JOIN bumped b ON b.conversation_id = w.conversation_id
         ), inserted AS (
           INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
             created_at, expires_at, kind, ref_id)
           SELECT id, conversation_id, seq, sender, recipient, client_msg_id, content, created_at, expires_at, kind, ref_id
           FROM numbered
           RETURNING message_id, conversation_id, seq, from_user_id
         ), delivered AS (
           INSERT INTO message_delivery (message_id, recipient_id, status)
           SELECT i.message_id, cm.user_id, 'sent' FROM inserted i
           JOIN conversation_members cm ON cm.conversation_id = i.conversation_id AND cm.user_id <> i.from_user_id
           ORDER BY i.conversation_id, i.seq, cm.user_id
           RETURNING message_id, recipient_id
         ), acted AS (
           -- A NULL in t means "unchanged"; reactions are { user: emoji } and a null value removes one.
           -- (SELECT ok ...) is evaluated once, before any row: nothing is touched when it is false.
           UPDATE messages m SET
             content = CASE WHEN t.deleted_at IS NOT NULL THEN '' ELSE COALESCE(t.content, m.content) END,
             edited_at = COALESCE(t.edited_at, m.edited_at),
             deleted_at = t.deleted_at,
             reactions = CASE WHEN t.deleted_at IS NOT NULL THEN '{}'::jsonb ELSE jsonb_strip_nulls(m.reactions || t.patch) END
           FROM t WHERE m.message_id = t.id AND (SELECT ok FROM unchanged)
         ), erased AS (
           -- The deleted messages' ids as a list of their own, so the partial ref_id index is
           -- probed per id (a join with t may scan every entry). Entries inserted above are not
           -- visible here: the caller stores those erased already.
           UPDATE messages e SET content = ''
           WHERE e.ref_id = ANY(?::uuid[]) AND e.ref_id IS NOT NULL AND e.content <> '' AND (SELECT ok FROM unchanged)
         )${pushDelayMs === undefined ? "" : PUSH_OUTBOX_CTE}
         SELECT d.message_id, d.recipient_id, i.seq FROM delivered d JOIN inserted i ON i.message_id = d.message_id`,
        [
          col((a) => a.req.id),
          col((a) => a.conversationId),
          col((a) => a.req.from),
          col((a) => a.to),
          col((a) => a.req.clientMsgId),
          col((a) => a.content),
          col((a) => a.req.createdAt.toISOString()),
          col((a) => a.expiresAt.toISOString()),
          col((a) => a.req.kind),
          col((a) => a.refId),
          plan((p) => p.row.message_id),
          plan((p) => p.row.xmin),
          plan((p) => p.content),
          plan((p) => iso(p.editedAt)),
          plan((p) => iso(p.deletedAt)),
          plan((p) => JSON.stringify(p.patch)),
          plans.filter((p) => p.deletedAt !== null).map((p) => p.row.message_id),
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
  // Every message has at least one recipient (a conversation has two members or more), so
  // a message missing here was not written: `unchanged` found a target changed.
  if (accepted.some((a) => !stored.has(a.req.id))) throw new TargetChanged();
  return stored;
}

/**
 * The push outbox part of the write (only when pushes are on): a row per delivery row of a
 * text message whose recipient has a pushkey, due PUSH_DELAY_MS after createdAt (edits,
 * deletes and reactions are not pushed). Written by the same
 * statement as the message, it commits or rolls back with it: no stored message can miss
 * its push, and no push can name a message that was not stored. Its binding comes last.
 */
const PUSH_OUTBOX_CTE = `, pushes AS (
           INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
           SELECT d.message_id, d.recipient_id, n.due_at, n.due_at FROM delivered d
           JOIN (SELECT id, created_at + ? * interval '1 millisecond' AS due_at FROM numbered WHERE kind = 'text') n
             ON n.id = d.message_id
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
    content: a.content,
    createdAt: a.req.createdAt.toISOString(),
    expiresAt: a.expiresAt.toISOString(),
    kind: a.req.kind,
    refId: a.refId,
    editedAt: null,
    deletedAt: null,
    reactions: [],
  };
}
