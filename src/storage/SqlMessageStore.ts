import type { Knex } from "knex";
import type { ConversationSummary, HistoryResult, Message } from "../protocol";
import type {
  AppendRequest,
  AppendResult,
  ConversationPage,
  HistoryQuery,
  MessageStore,
  NewGroup,
  PartitionReport,
  StatusChange,
  SummaryQuery,
} from "../messaging/ports";
import { appendIsolated } from "./append/appendRetries";
import { conversationKey } from "./append/lanes";
import { conversationSummaries, insertGroup } from "./conversationQueries";
import { backlogPages, departedFrom, historyPage, membersOf, undelivered, visibilityOf, type BacklogRequest } from "./messageReads";
import type { Visibility } from "../messaging/groupPorts";
import { runPrepared, statement } from "./prepared";
import { markReceipts, type ReceiptRequest } from "./receipts";
import { rowsOf, toNumber } from "./rows";
import { SqlPartitions } from "./partitions";
import { writeLastSeen, type LastSeenRequest } from "./lastSeen";
import { GroupCommit, type BatchOutcome } from "./GroupCommit";
import { unavailableOnDbError } from "./unavailable";

export const INSERT_USERS = statement(
  "insert_users",
  `INSERT INTO users (user_id) SELECT unnest($1::text[]) ON CONFLICT (user_id) DO NOTHING`,
);

/**
 * Requests of connects (a user to record, a backlog page to read) one statement serves. A
 * device that was online has an empty page; one that was away brings up to
 * BACKLOG_PAGE_SIZE + 1 rows: this bounds a statement's result (128 full pages of 101 rows
 * is about 6 MB).
 */
const CONNECT_BATCH = 128;

type ConnectRequest = { kind: "user"; userId: string } | ({ kind: "backlog" } & BacklogRequest);

export type StoreOptions = {
  /** Where the named hot-path statements run (database.ts: createHotPathDatabase). @default the main database */
  hotPath?: Knex;
  /** Largest group commit. @default 256 */
  maxBatch?: number;
  /** Receipt batches in flight at once. @default 4 */
  maxConcurrentBatches?: number;
  /**
   * Write lanes (append/lanes.ts): append batches in flight at once, never two with one
   * conversation's key, so one conversation's messages commit in the order they arrived on
   * this node; a second opens only under load or beside a stalled one. APPEND_LANES;
   * docs/benchmarks.md has how the default was chosen. @default 1
   */
  appendLanes?: number;
  onBatch?: (kind: "append" | "delivered" | "read" | "connect", size: number) => void;
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
  /** What connects need: users recorded, first backlog pages read (see connectMany). */
  private readonly connects: GroupCommit<ConnectRequest, Message[] | null>;
  /** Users going offline (lastSeen.ts): a crowd shares one UPDATE. */
  private readonly lastSeenWrites: GroupCommit<LastSeenRequest, void>;
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
    this.appends = new GroupCommit((reqs: AppendRequest[]) => appendIsolated(db, reqs, { hot: this.hot, pushDelayMs: this.pushDelayMs }), {
      ...batching,
      maxConcurrent: Math.max(1, options.appendLanes ?? 1),
      keyOf: conversationKey,
      overflowAt: Math.ceil(batching.maxBatch / 4),
      onBatch: (n) => options.onBatch?.("append", n),
    });
    this.deliveredReceipts = new GroupCommit((reqs) => this.markMany("delivered", reqs), {
      ...batching,
      onBatch: (n) => options.onBatch?.("delivered", n),
    });
    this.readReceipts = new GroupCommit((reqs) => this.markMany("read", reqs), {
      ...batching,
      onBatch: (n) => options.onBatch?.("read", n),
    });
    this.lastSeenWrites = new GroupCommit((reqs: LastSeenRequest[]) => writeLastSeen(db, reqs), { maxBatch: 1024, maxConcurrent: 1 });
    // One statement at a time: connects arriving while it runs join the next, so a crowd
    // costs few round trips (each one, on a loaded machine, mostly the wake-ups of a query).
    this.connects = new GroupCommit((reqs) => this.connectMany(reqs), {
      maxBatch: CONNECT_BATCH,
      maxConcurrent: 1,
      onBatch: (n) => options.onBatch?.("connect", n),
    });
  }

  /** Every connect records its user: many connects share one statement (a crowd reconnecting after a restart). */
  async ensureUser(userId: string): Promise<void> {
    await this.connects.submit({ kind: "user", userId });
  }

  /**
   * A batch of connects: the new users in the statement that reads the backlog pages
   * (messageReads.ts: BACKLOG_PAGES), or alone if the batch reads none.
   */
  private async connectMany(reqs: ConnectRequest[]): Promise<BatchOutcome<Message[] | null>[]> {
    // Sorted: two batches inserting the same new users take their index locks in one order.
    const users = [...new Set(reqs.flatMap((r) => (r.kind === "user" ? [r.userId] : [])))].sort();
    const reads = reqs.filter((r): r is ConnectRequest & { kind: "backlog" } => r.kind === "backlog");
    if (reads.length === 0) {
      await unavailableOnDbError(() => runPrepared(this.hot, INSERT_USERS, [users]));
      return reqs.map(() => ({ ok: true, value: null }));
    }
    const pages = await unavailableOnDbError(() => backlogPages(this.hot, reads, users));
    const byRequest = new Map(reads.map((r, i) => [r, pages[i]!]));
    return reqs.map((r) => ({ ok: true, value: r.kind === "backlog" ? byRequest.get(r)! : null }));
  }

  setLastSeen(userId: string, at: Date): Promise<void> {
    return this.lastSeenWrites.submit({ userId, at });
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

  /** Connects in the same tick share one statement (connectMany). */
  async backlog(recipient: string, now: Date, limit: number): Promise<Message[]> {
    return (await this.connects.submit({ kind: "backlog", recipient, now, limit }))!;
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

  listConversations(userId: string, now: Date, query?: SummaryQuery): Promise<ConversationPage> {
    return unavailableOnDbError(() => conversationSummaries(this.db, userId, now, query));
  }

  createGroup(req: NewGroup): Promise<ConversationSummary> {
    return unavailableOnDbError(() => insertGroup(this.db, req));
  }

  maintainPartitions(now: Date): Promise<PartitionReport> {
    return unavailableOnDbError(() => this.partitions.maintain(now));
  }

  /**
   * Up to `limit` expired rows the partition drops do not take: messages caught by the
   * DEFAULT partition (with their delivery rows and pending pushes: no cascades), then
   * expired idempotency keys. Returns how many of each went.
   */
  deleteExpired(now: Date, limit: number): Promise<{ messages: number; keys: number }> {
    return unavailableOnDbError(async () => {
      const messages = rowsOf<{ n: unknown }>(
        await this.db.raw(
          `WITH gone AS (
             DELETE FROM messages_default WHERE message_id IN (
               SELECT message_id FROM messages_default WHERE expires_at <= ? LIMIT ?
             ) RETURNING message_id
           ), deliveries AS (
             DELETE FROM message_delivery d USING gone WHERE d.message_id = gone.message_id
           ), pushes AS (
             DELETE FROM push_outbox o USING gone WHERE o.message_id = gone.message_id
           )
           SELECT count(*) AS n FROM gone`,
          [now, limit],
        ),
      );
      const keys = rowsOf<{ n: unknown }>(
        await this.db.raw(
          `WITH gone AS (
             DELETE FROM message_idempotency WHERE (from_user_id, client_msg_id) IN (
               SELECT from_user_id, client_msg_id FROM message_idempotency WHERE expires_at <= ? LIMIT ?
             ) RETURNING 1
           )
           SELECT count(*) AS n FROM gone`,
          [now, limit],
        ),
      );
      return { messages: toNumber(messages[0]!.n as number), keys: toNumber(keys[0]!.n as number) };
    });
  }

  ping(): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw("SELECT 1");
    });
  }
}
