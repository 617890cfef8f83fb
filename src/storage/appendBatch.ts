import type { Knex } from "knex";
import { v7 as uuidv7 } from "uuid";
import { AppError, type Message, type MessageKind } from "../protocol";
import type { AppendRequest, AppendResult, EntryAppend } from "../messaging/ports";
import { judgeEntry } from "../messaging/entryRules";
import { directKey, routeToConversation, type ConversationFacts } from "../messaging/routing";
import { runPrepared, statement } from "./prepared";
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

/**
 * One request as the write statement sees it: `accept` false means the rules refused it (it
 * is still probed, so a retry of an already stored message is answered as a duplicate).
 * A direct message carries its conversation's key; anything else, its conversation's id.
 */
export type BatchRow = {
  index: number;
  req: AppendRequest;
  accept: boolean;
  conversationId: string | null;
  directKey: string | null;
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
  entries: BatchRow[];
};

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Stores a batch of messages and entries (edits, deletes, reactions). A batch of direct
 * messages is ONE statement (its own transaction): it answers retries already stored,
 * finds each direct conversation by its key, hands out seq, inserts the messages and
 * their delivery rows, and commits. Per conversation, the row lock taken on
 * `conversations` hands out a contiguous seq range in request order, gap-free: any
 * failure rolls the statement back whole. Messages to a given conversation (groups) and
 * entries need reads first (members for the routing rules, the messages entries act on
 * for messaging/entryRules), which also answer stored retries; a first message between
 * two users needs a second write (the conversation is created, then its messages go in).
 * Every statement's cost follows the batch, not the table: each lookup is one index probe
 * per request. Returns one outcome per request, in order; refusals (NOT_FOUND, FORBIDDEN)
 * are per request and store nothing. Throws LostDuplicateRace when a concurrent retry got
 * in first, TargetChanged when an acted-on message changed meanwhile: run it again.
 */
export type AppendOptions = {
  /** Where the named statements run (database.ts: createHotPathDatabase). @default db */
  hot?: Knex;
  /**
   * Push notifications on: each recipient with a pushkey gets a push outbox row, due this
   * long after the message's createdAt, in the same statement as the message. Unset: the
   * statement has no push part at all.
   */
  pushDelayMs?: number;
  /**
   * Filled in place. A batch runs more than one statement when it holds a first message
   * between two users, and each commits on its own: when a later one fails, the caller
   * runs the batch again with the outcomes the earlier one committed still set, and those
   * requests are not run again (they stay `duplicate: false`, with their recipients).
   */
  outcomes?: BatchOutcome<AppendResult>[];
};

export async function appendBatch(db: Knex, reqs: AppendRequest[], options: AppendOptions = {}): Promise<BatchOutcome<AppendResult>[]> {
  const hot = options.hot ?? db;
  const push = options.pushDelayMs;
  const outcomes: BatchOutcome<AppendResult>[] = options.outcomes ?? new Array(reqs.length);
  // The same retry twice in one batch: only the first goes to the database.
  const firstInBatch = new Map<string, number>();
  const firsts: number[] = [];
  reqs.forEach((req, i) => {
    const key = senderKey(req);
    if (firstInBatch.has(key)) return;
    firstInBatch.set(key, i);
    if (!outcomes[i]) firsts.push(i);
  });

  const givenIds: string[] = [];
  const refIds: string[] = [];
  for (const i of firsts) {
    const req = reqs[i]!;
    if (req.kind !== "text") refIds.push(req.refId);
    else if ("conversationId" in req.target) givenIds.push(req.target.conversationId);
  }
  // Reads, only when the rules need them: stored retries are then answered by the same
  // parallel reads (a retry is answered before it is judged). Reads need no transaction:
  // what they decide is checked again by the one write (its constraints, and the
  // acted-on messages' row versions).
  let given: Conversations = new Map();
  let targets = new Map<string, TargetRow>();
  let fresh = firsts;
  if (givenIds.length > 0 || refIds.length > 0) {
    const [existing, facts] = await Promise.all([
      findStored(hot, firsts.map((i) => reqs[i]!)),
      loadConversations(db, givenIds, refIds),
    ]);
    ({ conversations: given, targets } = facts);
    const originals = new Map(existing.map((row) => [senderKey({ from: row.from_user_id, clientMsgId: row.client_msg_id }), row]));
    fresh = firsts.filter((i) => {
      const original = originals.get(senderKey(reqs[i]!));
      if (original) outcomes[i] = { ok: true, value: { duplicate: true, message: toMessage(original) } };
      return !original;
    });
  }

  // Where each request goes: a direct conversation by its key (created on first use), a
  // given one, or, for an entry, its target's if the rules allow it (judged in request
  // order, so an entry sees what earlier ones of the batch did to the same message).
  const rows: BatchRow[] = [];
  const plans = new Map<string, TargetPlan>();
  /** A delete repeated within the batch answers what the batch's first delete got. */
  const repeatOf = new Map<number, number>();
  for (const index of fresh) {
    const req = reqs[index]!;
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
        if (plan!.deletedBy !== null) repeatOf.set(index, plan!.deletedBy);
        else if (row!.delete_entry) outcomes[index] = { ok: true, value: { duplicate: true, message: toMessage(row!.delete_entry) } };
        else outcomes[index] = { ok: false, error: new AppError("FORBIDDEN", "the message was already deleted") };
      } else if (!verdict.ok) outcomes[index] = { ok: false, error: verdict.error };
      else {
        const route = routeToConversation(req.from, conversation); // ok: the actor is a member
        const r: BatchRow = {
          index,
          req,
          accept: true,
          conversationId: row!.conversation_id,
          directKey: null,
          to: route.ok ? route.to : null,
          content: req.content,
          expiresAt: new Date(row!.expires_at),
          refId: row!.message_id,
        };
        rows.push(r);
        plans.set(row!.message_id, plan!);
        applyToPlan(plan!, r);
      }
      continue;
    }
    const text = { content: req.content, expiresAt: req.expiresAt, refId: null };
    if ("to" in req.target) {
      rows.push({ index, req, accept: true, conversationId: null, directKey: directKey(req.from, req.target.to), to: req.target.to, ...text });
      continue;
    }
    const route = routeToConversation(req.from, given.get(req.target.conversationId));
    if (!route.ok) outcomes[index] = route;
    const to = route.ok ? route.to : null;
    rows.push({ index, req, accept: route.ok, conversationId: req.target.conversationId, directKey: null, to, ...text });
  }

  let unrouted = await write(hot, rows, [...plans.values()], outcomes, push);
  if (unrouted.length > 0) {
    // First messages between these users: create the conversations, then store them.
    await createDirect(db, unrouted);
    unrouted = await write(hot, unrouted, [], outcomes, push);
    if (unrouted.length > 0) throw new Error("direct conversation missing right after it was created");
  }

  for (const [i, first] of repeatOf) outcomes[i] = asRepeat(outcomes[first]!);
  // Same retry twice in one batch: the second answers what the first got.
  reqs.forEach((req, i) => {
    if (!outcomes[i]) outcomes[i] = asRepeat(outcomes[firstInBatch.get(senderKey(req))!]!);
  });
  return outcomes;
}

/** What a repeat of a request answers: the first one's message as a duplicate, or its error. */
const asRepeat = (o: BatchOutcome<AppendResult>): BatchOutcome<AppendResult> =>
  o.ok ? { ok: true, value: { duplicate: true, message: o.value.message } } : o;

function newPlan(row: TargetRow): TargetPlan {
  return { row, content: null, editedAt: null, deletedAt: null, deletedBy: null, patch: {}, entries: [] };
}

function applyToPlan(plan: TargetPlan, r: BatchRow): void {
  const req = r.req as EntryAppend;
  plan.entries.push(r);
  if (req.kind === "edit") {
    plan.content = req.content;
    plan.editedAt = req.createdAt;
  } else if (req.kind === "reaction") {
    plan.patch[req.from] = req.content === "" ? null : req.content;
  } else {
    plan.deletedAt = req.createdAt;
    plan.deletedBy = r.index;
    // The write erases the entries already stored; this batch's own are stored erased.
    for (const e of plan.entries) if (e !== r) e.content = "";
  }
}

/**
 * Runs the write statement for `rows` (and the entries' `plans`), fills their outcomes;
 * returns the direct ones whose conversation does not exist yet.
 */
async function write(
  db: Knex,
  rows: BatchRow[],
  plans: TargetPlan[],
  outcomes: BatchOutcome<AppendResult>[],
  pushDelayMs: number | undefined,
): Promise<BatchRow[]> {
  let result: WriteRow[];
  try {
    const values = writeValues(rows, plans);
    result =
      pushDelayMs === undefined
        ? await runPrepared<WriteRow>(db, WRITE, values)
        : await runPrepared<WriteRow>(db, WRITE_PUSH, [...values, pushDelayMs]);
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
    if (s) {
      outcomes[row.index] = {
        ok: true,
        value: { duplicate: false, message: messageOf(row, s.seq, s.conversationId), recipients: s.recipients },
      };
    } else if (row.conversationId !== null) {
      // Its conversation is known to exist: it was not written because `unchanged` found an
      // acted-on message changed, and then nothing was.
      throw new TargetChanged();
    } else unrouted.push(row);
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
 * The write. In order of the CTEs:
 * - `v`: the batch's messages and entries, in request order; `t`: per acted-on message,
 *   what the batch's entries do to it (folded by the caller) and the row version the
 *   reads saw.
 * - `stored`: retries of messages stored earlier, one probe of the unique index per
 *   request; they are answered with the original and not written again.
 * - `current`/`unchanged`: locks the acted-on messages and checks that none changed or went
 *   since the reads. Otherwise nothing below writes anything (the caller redoes the batch):
 *   an entry is never judged on a stale state, and a delete never misses an edit
 *   committed by another node after this statement's snapshot.
 * - `routed`: what is written, each with its conversation (a direct one found by its key;
 *   a direct message whose conversation does not exist yet is left out, and created by
 *   the caller).
 * - lock the batch's conversations in id order (concurrent batches cannot deadlock), move
 *   each seq counter by its number of messages, number the messages in request order
 *   from there, insert them, then their delivery rows in seq order (so delivery_id follows
 *   seq within a conversation: the backlog's order).
 * - `acted`: the targets' new state (content, editedAt, reactions; a delete empties them);
 *   `erased`: a delete empties the content of the entries already stored for its message.
 * Returns the stored originals (with `ord`, the request's position), each new message's
 * conversation and seq, and each of its delivery rows' recipient. A unique violation (a
 * concurrent retry stored the same clientMsgId first) undoes the whole statement, seq
 * included.
 *
 * Runs as a named statement with one generic plan (database.ts: createHotPathDatabase):
 * every table is reached by key from the batch's rows. Checked with bench/explain.ts.
 */
const writeText = (push: string) => `WITH v AS (
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[],
       $8::timestamptz[], $9::timestamptz[], $10::bool[], $11::text[], $12::uuid[])
       WITH ORDINALITY AS v(id, sender, recipient, given_id, direct_key, client_msg_id, content, created_at, expires_at,
         accept, kind, ref_id, ord)
   ), t AS (
     SELECT * FROM unnest($13::uuid[], $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[], $18::jsonb[])
       AS t(id, seen_xmin, content, edited_at, deleted_at, patch)
   ), stored AS (
     SELECT v.ord, to_jsonb(m) AS original FROM v
     JOIN messages m ON m.from_user_id = v.sender AND m.client_msg_id = v.client_msg_id
   ), current AS MATERIALIZED (
     -- FOR UPDATE waits for a concurrent writer and then returns the row as it committed it.
     SELECT m.message_id, m.xmin::text AS xmin FROM messages m
     WHERE m.message_id IN (SELECT id FROM t) AND m.deleted_at IS NULL
     ORDER BY m.message_id FOR UPDATE
   ), unchanged AS MATERIALIZED (
     SELECT count(*) = (SELECT count(*) FROM t) AS ok
     FROM current c JOIN t ON t.id = c.message_id AND t.seen_xmin = c.xmin
   ), routed AS (
     SELECT v.*, coalesce(v.given_id, d.conversation_id) AS conversation_id
     FROM v LEFT JOIN conversations d ON d.direct_key = v.direct_key
     WHERE v.accept AND coalesce(v.given_id, d.conversation_id) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = v.ord)
       AND (SELECT ok FROM unchanged)
   ), counts AS (
     -- Only text moves a conversation up the list; every kind takes a seq.
     SELECT conversation_id, count(*)::int AS n, max(created_at) FILTER (WHERE kind = 'text') AS text_at
     FROM routed GROUP BY conversation_id
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
     SELECT r.*, b.base + row_number() OVER (PARTITION BY r.conversation_id ORDER BY r.ord) AS seq
     FROM routed r JOIN bumped b ON b.conversation_id = r.conversation_id
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
     WHERE e.ref_id = ANY($19::uuid[]) AND e.ref_id IS NOT NULL AND e.content <> '' AND (SELECT ok FROM unchanged)
   )${push}
   SELECT s.ord, NULL::uuid AS message_id, NULL::uuid AS conversation_id, NULL::bigint AS seq, NULL::text AS recipient,
     s.original
   FROM stored s
   UNION ALL
   SELECT NULL, message_id, conversation_id, seq, NULL, NULL FROM inserted
   UNION ALL
   SELECT NULL, message_id, NULL, NULL, recipient_id, NULL FROM delivered`;

export const WRITE = statement("append", writeText(""));

/**
 * The push outbox part of the write (only when pushes are on): a row per delivery row of a
 * text message whose recipient has a pushkey, due PUSH_DELAY_MS ($20) after createdAt
 * (edits, deletes and reactions are not pushed). Written by the same statement as the
 * message, it commits or rolls back with it: no stored message can miss its push, and no
 * push can name a message that was not stored.
 */
const WRITE_PUSH = statement(
  "append_push",
  writeText(`, pushes AS (
     INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
     SELECT d.message_id, d.recipient_id, n.due_at, n.due_at FROM delivered d
     JOIN (SELECT id, created_at + $20::int * interval '1 millisecond' AS due_at FROM numbered WHERE kind = 'text') n
       ON n.id = d.message_id
     WHERE EXISTS (SELECT 1 FROM pushkeys p WHERE p.user_id = d.recipient_id)
   )`),
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

export function writeValues(rows: BatchRow[], plans: TargetPlan[] = []): unknown[] {
  const col = <T>(pick: (r: BatchRow) => T) => rows.map(pick);
  const plan = <T>(pick: (p: TargetPlan) => T) => plans.map(pick);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return [
    col((r) => r.req.id),
    col((r) => r.req.from),
    col((r) => r.to),
    col((r) => r.conversationId),
    col((r) => r.directKey),
    col((r) => r.req.clientMsgId),
    col((r) => r.content),
    col((r) => r.req.createdAt.toISOString()),
    col((r) => r.expiresAt.toISOString()),
    col((r) => r.accept),
    col((r) => r.req.kind),
    col((r) => r.refId),
    plan((p) => p.row.message_id),
    plan((p) => p.row.xmin),
    plan((p) => p.content),
    plan((p) => iso(p.editedAt)),
    plan((p) => iso(p.deletedAt)),
    plan((p) => JSON.stringify(p.patch)),
    plans.filter((p) => p.deletedAt !== null).map((p) => p.row.message_id),
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
    content: row.content,
    createdAt: req.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    kind: req.kind,
    refId: row.refId,
    editedAt: null,
    deletedAt: null,
    reactions: [],
  };
}
