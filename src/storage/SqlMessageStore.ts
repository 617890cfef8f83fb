import type { Knex } from "knex";
import { AppError, StorageUnavailableError, type ConversationSummary, type HistoryResult, type Message } from "../protocol";
import type {
  AppendRequest,
  AppendResult,
  HistoryQuery,
  Membership,
  MessageStore,
  NewGroup,
  StatusChange,
} from "../messaging/ports";
import { directKey } from "../messaging/routing";
import { appendBatch, LostDuplicateRace, TargetChanged } from "./appendBatch";
import { conversationSummaries, insertGroup } from "./conversationQueries";
import { runPrepared, statement } from "./prepared";
import { MESSAGE_COLUMNS, rowsOf, toMessage, type MessageRow } from "./rows";
import { GroupCommit, type BatchOutcome } from "./GroupCommit";

/** A refusal (AppError) passes through as it is; any other failure is the database's: UNAVAILABLE. */
const asStorageError = (err: unknown): unknown => (err instanceof AppError ? err : new StorageUnavailableError(err));

/** Runs a query, turning database failures into StorageUnavailableError. */
export async function unavailableOnDbError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw asStorageError(err);
  }
}

/**
 * Receipts of many devices in one UPDATE. Only rows of the caller as recipient move, and
 * only forward: sent → delivered → read (read also sets delivered_at; an expired message
 * is no longer marked read). Only text is read: a read receipt of an edit, delete or
 * reaction changes nothing.
 *
 * Each delivery row is found by its primary key, message id first. `|| ''` keeps the
 * recipient and status tests off the (recipient_id, status, delivery_id) index: these run
 * with one generic plan (database.ts), and one made on a small table picked that index
 * (every 'sent' row, or every row of the recipient) and kept it as the table grew.
 */
const RECEIPT_SQL = {
  delivered: `UPDATE message_delivery d SET status = 'delivered', delivered_at = v.at
     FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS v(recipient_id, message_id, at), messages m
     WHERE d.message_id = v.message_id AND (d.recipient_id || '') = v.recipient_id AND (d.status || '') = 'sent'
       AND m.message_id = d.message_id
     RETURNING d.recipient_id, d.message_id, m.from_user_id`,
  read: `UPDATE message_delivery d SET status = 'read', read_at = v.at, delivered_at = COALESCE(d.delivered_at, v.at)
     FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS v(recipient_id, message_id, at), messages m
     WHERE d.message_id = v.message_id AND (d.recipient_id || '') = v.recipient_id AND d.status <> 'read'
       AND m.message_id = d.message_id AND m.expires_at > v.at AND m.kind = 'text'
     RETURNING d.recipient_id, d.message_id, m.from_user_id`,
};

/** With pushes on, a confirmation cancels the recipient's pending push in the same statement. */
const withPushCancel = (sql: string) => `WITH changed AS (${sql}), cancelled AS (
     DELETE FROM push_outbox o USING changed c
     WHERE o.message_id = c.message_id AND o.recipient_id = c.recipient_id
   )
   SELECT recipient_id, message_id, from_user_id FROM changed`;

export const RECEIPT = {
  delivered: statement("mark_delivered", RECEIPT_SQL.delivered),
  read: statement("mark_read", RECEIPT_SQL.read),
};
const RECEIPT_PUSH = {
  delivered: statement("mark_delivered_push", withPushCancel(RECEIPT_SQL.delivered)),
  read: statement("mark_read_push", withPushCancel(RECEIPT_SQL.read)),
};
const receiptStatement = (status: "delivered" | "read", push: boolean) => (push ? RECEIPT_PUSH : RECEIPT)[status];

export const INSERT_USERS = statement(
  "insert_users",
  `INSERT INTO users (user_id) SELECT unnest($1::text[]) ON CONFLICT (user_id) DO NOTHING`,
);

/** A page of the recipient's backlog: every connect reads at least one (usually empty) page, twice. */
export const BACKLOG = statement(
  "backlog",
  `SELECT ${MESSAGE_COLUMNS} FROM message_delivery d
   JOIN messages m ON m.message_id = d.message_id
   WHERE d.recipient_id = $1 AND d.status = 'sent' AND m.expires_at > $2
   ORDER BY d.delivery_id LIMIT $3`,
);

/**
 * The conversation a send goes to, as far as it is known before the write (a direct one by
 * its pair); an entry's is not known before its read: it is keyed by the message it acts on.
 */
const conversationKey = (req: AppendRequest): string =>
  req.kind !== "text"
    ? `entry ${req.refId}`
    : "to" in req.target
      ? `direct ${directKey(req.from, req.target.to)}`
      : `id ${req.target.conversationId}`;

/** Deadlock and serialization failures: the transaction can simply run again. */
const RETRYABLE_PG_CODES = new Set(["40P01", "40001"]);

type ReceiptRequest = { recipient: string; messageIds: string[]; at: Date };

export type StoreOptions = {
  /** Where the named hot-path statements run (database.ts: createHotPathDatabase). @default the main database */
  hotPath?: Knex;
  /** Largest group commit. @default 256 */
  maxBatch?: number;
  /** Receipt batches in flight at once. @default 4 */
  maxConcurrentBatches?: number;
  /**
   * Append batches in flight at once. They never share a conversation, so messages of one
   * conversation commit in the order they arrived on this node. More than one measured
   * no steadier gain on this project's 2-core machine (docs/benchmarks.md): batches split
   * by conversation get smaller, and each pays its own commit.
   * @default 1
   */
  maxConcurrentAppends?: number;
  onBatch?: (kind: "append" | "delivered" | "read" | "users", size: number) => void;
  /**
   * Push notifications on (PUSH_GATEWAY_URL set): appends write push outbox rows due this
   * long after the message, and receipts cancel them, each inside the one statement it runs
   * anyway. Unset: neither statement touches the push tables.
   */
  pushDelayMs?: number;
};

/**
 * The Knex repository behind the messaging core, for PostgreSQL and PGlite alike. Database
 * failures surface as StorageUnavailableError (the protocol's UNAVAILABLE); the refusals
 * `append` decides itself (NOT_FOUND, FORBIDDEN: see MessageStore.append) are AppErrors and
 * pass through as they are.
 */
export class SqlMessageStore implements MessageStore {
  private readonly appends: GroupCommit<AppendRequest, AppendResult>;
  private readonly deliveredReceipts: GroupCommit<ReceiptRequest, StatusChange[]>;
  private readonly readReceipts: GroupCommit<ReceiptRequest, StatusChange[]>;
  private readonly newUsers: GroupCommit<string, void>;
  private readonly hot: Knex;
  private readonly pushDelayMs: number | undefined;

  constructor(
    private readonly db: Knex,
    options: StoreOptions = {},
  ) {
    this.hot = options.hotPath ?? db;
    this.pushDelayMs = options.pushDelayMs;
    const batching = { maxBatch: options.maxBatch ?? 256, maxConcurrent: options.maxConcurrentBatches ?? 4 };
    this.appends = new GroupCommit((reqs) => this.appendMany(reqs), {
      ...batching,
      maxConcurrent: options.maxConcurrentAppends ?? 1,
      onBatch: (n) => options.onBatch?.("append", n),
      keyOf: conversationKey,
    });
    this.deliveredReceipts = new GroupCommit((reqs) => this.markMany("delivered", reqs), {
      ...batching,
      onBatch: (n) => options.onBatch?.("delivered", n),
    });
    this.readReceipts = new GroupCommit((reqs) => this.markMany("read", reqs), {
      ...batching,
      onBatch: (n) => options.onBatch?.("read", n),
    });
    this.newUsers = new GroupCommit((ids) => this.insertUsers(ids), {
      ...batching,
      onBatch: (n) => options.onBatch?.("users", n),
    });
  }

  /** Every connect records its user: many connects share one statement (a crowd reconnecting after a restart). */
  ensureUser(userId: string): Promise<void> {
    return this.newUsers.submit(userId);
  }

  private async insertUsers(ids: string[]): Promise<BatchOutcome<void>[]> {
    // Sorted: two batches inserting the same new users take their index locks in one order.
    const unique = [...new Set(ids)].sort();
    await unavailableOnDbError(() => runPrepared(this.hot, INSERT_USERS, [unique]));
    return ids.map(() => ({ ok: true, value: undefined }));
  }

  setLastSeen(userId: string, at: Date): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw(`UPDATE users SET last_seen = ? WHERE user_id = ?`, [at, userId]);
    });
  }

  lastSeen(userIds: string[]): Promise<Map<string, Date>> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ user_id: string; last_seen: Date | string }>(
        await this.db.raw(`SELECT user_id, last_seen FROM users WHERE user_id = ANY(?::text[]) AND last_seen IS NOT NULL`, [userIds]),
      );
      return new Map(rows.map((r) => [r.user_id, new Date(r.last_seen)]));
    });
  }

  append(req: AppendRequest): Promise<AppendResult> {
    return this.appends.submit(req);
  }

  /** Retried when a concurrent batch won a duplicate race, changed an acted-on message or deadlocked. */
  private async appendMany(reqs: AppendRequest[]): Promise<BatchOutcome<AppendResult>[]> {
    const outcomes: BatchOutcome<AppendResult>[] = new Array(reqs.length);
    for (let attempt = 1; ; attempt++) {
      try {
        return await appendBatch(this.db, reqs, { hot: this.hot, pushDelayMs: this.pushDelayMs, outcomes });
      } catch (err) {
        const retryable =
          err instanceof LostDuplicateRace || err instanceof TargetChanged || RETRYABLE_PG_CODES.has((err as { code?: string }).code ?? "");
        if (retryable && attempt < 5) {
          // Keep only what an earlier statement of the batch committed; the rest is judged again.
          outcomes.forEach((o, i) => {
            if (!o.ok || o.value.duplicate) delete outcomes[i];
          });
          continue;
        }
        throw asStorageError(err);
      }
    }
  }

  markDelivered(recipient: string, messageIds: string[], at: Date): Promise<StatusChange[]> {
    return this.deliveredReceipts.submit({ recipient, messageIds, at });
  }

  markRead(reader: string, messageIds: string[], at: Date): Promise<StatusChange[]> {
    return this.readReceipts.submit({ recipient: reader, messageIds, at });
  }

  /** Receipts of many devices in one statement (RECEIPT); each caller gets back its own changes. */
  private async markMany(status: "delivered" | "read", reqs: ReceiptRequest[]): Promise<BatchOutcome<StatusChange[]>[]> {
    const recipients = reqs.flatMap((r) => r.messageIds.map(() => r.recipient));
    const ids = reqs.flatMap((r) => r.messageIds);
    const at = reqs.flatMap((r) => r.messageIds.map(() => r.at.toISOString()));
    const rows = await unavailableOnDbError(() =>
      runPrepared<{ recipient_id: string; message_id: string; from_user_id: string }>(this.hot, receiptStatement(status, this.pushDelayMs !== undefined), [
        recipients,
        ids,
        at,
      ]),
    );
    const changed = new Map(rows.map((r) => [`${r.recipient_id} ${r.message_id}`, r.from_user_id]));
    return reqs.map((r) => {
      const mine: StatusChange[] = [];
      for (const id of r.messageIds) {
        const key = `${r.recipient} ${id}`;
        const from = changed.get(key);
        if (from === undefined) continue;
        changed.delete(key); // a receipt listed twice in one batch counts once
        mine.push({ messageId: id, from });
      }
      return { ok: true, value: mine };
    });
  }

  undelivered(
    recipients: string[],
    createdBefore: Date,
    now: Date,
    limit: number,
    createdAfter?: Date,
  ): Promise<{ recipient: string; message: Message }[]> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<MessageRow & { recipient_id: string }>(
        await this.db.raw(
          `SELECT d.recipient_id, ${MESSAGE_COLUMNS} FROM message_delivery d
           JOIN messages m ON m.message_id = d.message_id
           WHERE d.recipient_id = ANY(?::text[]) AND d.status = 'sent' AND m.created_at <= ? AND m.expires_at > ?
             AND m.created_at > ?
           ORDER BY d.delivery_id LIMIT ?`,
          [recipients, createdBefore, now, createdAfter ?? new Date(0), limit],
        ),
      );
      return rows.map((r) => ({ recipient: r.recipient_id, message: toMessage(r) }));
    });
  }

  backlog(recipient: string, now: Date, limit: number): Promise<Message[]> {
    return unavailableOnDbError(async () => {
      const rows = await runPrepared<MessageRow>(this.hot, BACKLOG, [recipient, now.toISOString(), limit]);
      return rows.map(toMessage);
    });
  }

  history(conversationId: string, query: HistoryQuery, now: Date): Promise<HistoryResult> {
    return unavailableOnDbError(async () => {
      const where = ["m.conversation_id = ?", "m.expires_at > ?"];
      const bindings: Knex.RawBinding[] = [conversationId, now];
      if (query.afterSeq !== undefined) {
        where.push("m.seq > ?");
        bindings.push(query.afterSeq);
      }
      if (query.beforeSeq !== undefined) {
        where.push("m.seq < ?");
        bindings.push(query.beforeSeq);
      }
      // With afterSeq the page starts right after it (catching up); otherwise it ends at
      // beforeSeq or the newest message (scrolling back). Either way: seq ascending.
      const forward = query.afterSeq !== undefined;
      const rows = rowsOf<MessageRow>(
        await this.db.raw(
          `SELECT ${MESSAGE_COLUMNS} FROM messages m WHERE ${where.join(" AND ")}
           ORDER BY m.seq ${forward ? "ASC" : "DESC"} LIMIT ?`,
          [...bindings, query.limit + 1],
        ),
      );
      const hasMore = rows.length > query.limit;
      const page = rows.slice(0, query.limit).map(toMessage);
      return { messages: forward ? page : page.reverse(), hasMore };
    });
  }

  membership(conversationId: string, userId: string): Promise<Membership> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ is_member: boolean }>(
        await this.db.raw(
          `SELECT EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = c.conversation_id AND user_id = ?)
             AS is_member
           FROM conversations c WHERE c.conversation_id = ?`,
          [userId, conversationId],
        ),
      );
      if (!rows[0]) return "not_found";
      return rows[0].is_member ? "member" : "not_member";
    });
  }

  members(conversationId: string): Promise<string[] | null> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ user_id: string | null }>(
        await this.db.raw(
          `SELECT cm.user_id FROM conversations c
           LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id
           WHERE c.conversation_id = ? ORDER BY cm.user_id`,
          [conversationId],
        ),
      );
      if (rows.length === 0) return null;
      return rows.flatMap((r) => (r.user_id ? [r.user_id] : []));
    });
  }

  listConversations(userId: string, now: Date): Promise<ConversationSummary[]> {
    return unavailableOnDbError(() => conversationSummaries(this.db, userId, now));
  }

  createGroup(req: NewGroup): Promise<ConversationSummary> {
    return unavailableOnDbError(() => insertGroup(this.db, req));
  }

  /**
   * Any `limit` expired messages, not the oldest first: expires_at has a BRIN index (cheap
   * on every insert), whose scan returns the expired rows in table order, so the LIMIT stops
   * early instead of sorting every expired row of a long backlog on each round.
   */
  deleteExpired(now: Date, limit: number): Promise<number> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ message_id: string }>(
        await this.db.raw(
          `DELETE FROM messages WHERE message_id IN (
             SELECT message_id FROM messages WHERE expires_at <= ? LIMIT ?
           ) RETURNING message_id`,
          [now, limit],
        ),
      );
      return rows.length;
    });
  }

  ping(): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw("SELECT 1");
    });
  }
}
