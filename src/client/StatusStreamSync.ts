/**
 * The client's side of the status stream (docs/protocol.md): after every `sync:complete`
 * it pages `status:sync` from the last cursor it applied, so a tick that moved while this
 * device was away, or between two sockets, still reaches it. The cursor and the statuses
 * it shows are kept in the client's storage, beside the outbox (IndexedDB in a browser):
 * a reloaded page neither starts the stream over nor forgets its ticks.
 *
 * Only a cursor that `status:sync` answered is kept, never a live event's: live events can
 * be lost (a socket between two nodes) or overtaken (two nodes), and storing one could
 * step over a change this device never received. Reading again a change seen live is
 * harmless: statuses only move forward.
 */
import type { StatusSyncRequest, StatusSyncResult, StatusUpdate } from "../protocol/events";
import type { Conversations } from "./Conversations";
import type { OutboxStorage } from "./OutboxStorage";
import { ServerError } from "./request";
import { statusApplier } from "./serverEvents";
import { StatusTracker, type StatusChange } from "./StatusTracker";

export type StatusStreamDeps = {
  /** `status:sync`, rejecting with ServerError when the server refuses. */
  sync(req: StatusSyncRequest): Promise<StatusSyncResult>;
  /** One update, as a live `message:status` is applied. */
  apply(update: StatusUpdate): void;
  tracker: Pick<StatusTracker, "snapshot" | "restore">;
};

/** status:sync's largest page. */
const PAGE = 1000;

export class StatusStreamSync {
  private cursor: string | null = null;
  private restoring: Promise<void> | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  private periodic: ReturnType<typeof setInterval> | undefined;
  /** Runs one after another: a periodic run and the one after a sync never interleave their cursors. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: StatusStreamDeps,
    private readonly storage: OutboxStorage,
    /**
     * While connected, the stream is read again this often (0: never). A live event can be
     * lost without this device reconnecting: another node died after committing a receipt
     * and before emitting it. One status:sync that finds nothing is one index probe.
     */
    private readonly intervalMs = 120_000,
    /** Live status changes are written to storage at most this often. */
    private readonly saveDelayMs = 1000,
  ) {}

  /** The last cursor applied (null: from the stream's start). */
  get position(): string | null {
    return this.cursor;
  }

  /** Reads what an earlier session kept; once. */
  restore(): Promise<void> {
    return (this.restoring ??= (async () => {
      const kept = await this.storage.loadStatus?.();
      if (!kept) return;
      this.cursor = kept.cursor;
      this.deps.tracker.restore(kept.statuses);
    })().catch(() => undefined));
  }

  /** Pages the stream from the kept cursor to its end; returns how many updates were applied. */
  catchUp(): Promise<number> {
    const run = this.queue.then(() => this.read());
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Connected and synced: read the stream every intervalMs until stopped. */
  start(onError: (err: Error) => void): void {
    this.stop();
    if (this.intervalMs > 0) this.periodic = setInterval(() => void this.catchUp().catch(onError), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.periodic);
    this.periodic = undefined;
  }

  private async read(): Promise<number> {
    await this.restore();
    let applied = 0;
    for (let retried = false; ; ) {
      let page: StatusSyncResult;
      try {
        page = await this.deps.sync({ ...(this.cursor ? { after: this.cursor } : {}), limit: PAGE });
      } catch (err) {
        // A cursor this server no longer accepts (another server, a reset database): start over.
        if (err instanceof ServerError && err.code === "BAD_REQUEST" && this.cursor && !retried) {
          this.cursor = null;
          retried = true;
          continue;
        }
        throw err;
      }
      for (const update of page.updates) this.deps.apply(update);
      applied += page.updates.length;
      this.cursor = page.cursor;
      if (!page.hasMore) break;
    }
    await this.save();
    return applied;
  }

  /** A status moved: keep it (soon, several at once). */
  changed(): void {
    if (this.saveTimer || !this.storage.saveStatus) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, this.saveDelayMs);
  }

  /** Writes what is pending now. */
  close(): void {
    this.stop();
    if (!this.saveTimer) return;
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    void this.save();
  }

  private async save(): Promise<void> {
    await this.storage.saveStatus?.({ cursor: this.cursor, statuses: this.deps.tracker.snapshot() }).catch(() => undefined);
  }
}

/**
 * A client's status parts, wired together: the tracker (group recipients from the
 * conversation list; every change emitted and kept through the stream's storage, so a
 * restart shows it at once), the stream, and how one update is applied.
 */
export function statusParts(
  me: () => string | undefined,
  conversations: Conversations,
  emit: (change: StatusChange) => void,
  sync: StatusStreamDeps["sync"],
  storage: OutboxStorage,
  intervalMs?: number,
): { statuses: StatusTracker; stream: StatusStreamSync; apply: (update: StatusUpdate) => void } {
  let stream: StatusStreamSync | undefined;
  const statuses = new StatusTracker(
    (change) => {
      stream?.changed();
      emit(change);
    },
    (conversationId) => conversations.recipients(conversationId),
  );
  const apply = statusApplier(me, conversations, statuses);
  stream = new StatusStreamSync({ sync, apply, tracker: statuses }, storage, intervalMs);
  return { statuses, stream, apply };
}
