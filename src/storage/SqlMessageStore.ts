import type { Knex } from "knex";
import type { ConversationSummary, HistoryResult, Message } from "../protocol";
import type {
  AppendRequest,
  AppendResult,
  HistoryQuery,
  MessageStore,
  NewGroup,
  PartitionReport,
  StatusChange,
} from "../messaging/ports";
import { directKey } from "../messaging/routing";
import { appendBatch } from "./append/appendBatch";
import { LostDuplicateRace, TargetChanged } from "./append/errors";
import { forgetGoneOriginals } from "./append/reads";
import { conversationSummaries, insertGroup } from "./conversationQueries";
import { backlogPage, departedFrom, historyPage, membersOf, undelivered, visibilityOf } from "./messageReads";
import type { Visibility } from "../messaging/groupPorts";
import { runPrepared, statement } from "./prepared";
import { markReceipts, type ReceiptRequest } from "./receipts";
import { rowsOf } from "./rows";
import { SqlPartitions } from "./partitions";
import { GroupCommit, type BatchOutcome } from "./GroupCommit";
import { asStorageError, unavailableOnDbError } from "./unavailable";

export const INSERT_USERS = statement(
  "insert_users",
  `INSERT INTO users (user_id) SELECT unnest($1::text[]) ON CONFLICT (user_id) DO NOTHING`,
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
  private readonly partitions: SqlPartitions;

  constructor(
    private readonly db: Knex,
    options: StoreOptions = {},
  ) {
    this.hot = options.hotPath ?? db;
    this.pushDelayMs = options.pushDelayMs;
    this.partitions = new SqlPartitions(db);
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
          // A key whose message went with a hand-dropped partition would lose every race: forget it.
          // Best effort: if this fails too, the next attempt reports the database's state.
          if (err instanceof LostDuplicateRace) await forgetGoneOriginals(this.db, reqs).catch(() => {});
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

  private markMany(status: "delivered" | "read", reqs: ReceiptRequest[]): Promise<BatchOutcome<StatusChange[]>[]> {
    return markReceipts(this.hot, status, this.pushDelayMs !== undefined, reqs);
  }

  undelivered(
    recipients: string[],
    createdBefore: Date,
    now: Date,
    limit: number,
    createdAfter?: Date,
  ): Promise<{ recipient: string; message: Message }[]> {
    return unavailableOnDbError(() => undelivered(this.db, recipients, createdBefore, now, limit, createdAfter));
  }

  backlog(recipient: string, now: Date, limit: number): Promise<Message[]> {
    return unavailableOnDbError(() => backlogPage(this.hot, recipient, now, limit));
  }

  history(conversationId: string, query: HistoryQuery, now: Date): Promise<HistoryResult> {
    return unavailableOnDbError(() => historyPage(this.db, conversationId, query, now));
  }

  visibility(conversationId: string, userId: string): Promise<Visibility> {
    return unavailableOnDbError(() => visibilityOf(this.db, conversationId, userId));
  }

  departedFrom(userId: string, messageIds: string[]): Promise<boolean> {
    return unavailableOnDbError(() => departedFrom(this.db, userId, messageIds));
  }

  members(conversationId: string): Promise<string[] | null> {
    return unavailableOnDbError(() => membersOf(this.db, conversationId));
  }

  listConversations(userId: string, now: Date): Promise<ConversationSummary[]> {
    return unavailableOnDbError(() => conversationSummaries(this.db, userId, now));
  }

  createGroup(req: NewGroup): Promise<ConversationSummary> {
    return unavailableOnDbError(() => insertGroup(this.db, req));
  }

  maintainPartitions(now: Date): Promise<PartitionReport> {
    return unavailableOnDbError(() => this.partitions.maintain(now));
  }

  deleteExpired(now: Date, limit: number): Promise<{ messages: number; keys: number }> {
    return unavailableOnDbError(() => this.partitions.deleteExpired(now, limit));
  }

  ping(): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw("SELECT 1");
    });
  }
}
