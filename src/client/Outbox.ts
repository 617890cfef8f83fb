/**
 * The outbox: every write the user makes (send, edit, delete, react) is kept in storage until
 * the server acknowledges it, and sent one after another in the order the user made them.
 * An entry counts as pending (add() resolves, pending lists it) only once the storage has it:
 * from then on a closed tab or a crash no longer loses it.
 * Each keeps its clientMsgId across every attempt (timeouts, reconnects, restarts of the app
 * with a persistent storage), so the server stores it exactly once.
 *
 * - no acknowledgement (timeout, connection lost): sent again once connected;
 * - RATE_LIMITED, UNAVAILABLE: sent again after a growing delay, never dropped;
 * - any other error (TOO_LARGE, FORBIDDEN, BAD_REQUEST, NOT_FOUND…): the entry fails with
 *   the server's reason and leaves the outbox; nothing is retried for it.
 */
import type { ErrorCode } from "../protocol/errors";
import type { Message } from "../protocol/events";
import { backoffDelay, Sleeper } from "./backoff";
import type { OutboxStorage, PendingAction, PendingEntry } from "./OutboxStorage";
import { needsUpload } from "./mediaUpload";
import { RequestTimeout, ServerError } from "./request";

export type OutboxLink = {
  /** Resolves once connected (at once if connected); rejects once the client is closed. */
  whenConnected(): Promise<void>;
  /** Emits and resolves the raw reply; rejects with RequestTimeout without an acknowledgement. */
  emit(event: string, payload: unknown): Promise<unknown>;
  /**
   * Uploads a sendMedia entry's bytes, setting its `media.mediaId` (mediaUpload.ts). Rejects
   * with ServerError when the server refuses the upload, anything else when worth a retry.
   */
  upload(entry: PendingEntry): Promise<void>;
};

export type OutboxEvents = {
  /** Acknowledged: `message` is what the server stored (the original one if `duplicate`). */
  done(entry: PendingEntry, message: Message, duplicate: boolean): void;
  failed(entry: PendingEntry, error: { code: ErrorCode; message: string }): void;
  /** Will be sent again after `delayMs` (0: as soon as connected). */
  retrying(entry: PendingEntry, reason: string, delayMs: number): void;
};

export type OutboxOptions = {
  /** First delay after RATE_LIMITED or UNAVAILABLE. @default 500 */
  retryBaseMs?: number;
  /** Longest delay between attempts. @default 10000 */
  retryMaxMs?: number;
};

const RETRY_LATER: ReadonlySet<string> = new Set<ErrorCode>(["RATE_LIMITED", "UNAVAILABLE"]);

/** The storage refused a new entry: nothing was queued, nothing will be sent. */
export class OutboxStorageError extends Error {
  override readonly name = "OutboxStorageError";
}

/** An entry and its write to storage, which the first attempt waits for. */
type Slot = { readonly entry: PendingEntry; readonly stored: Promise<void>; isStored: boolean };

type Reply = { ok: true; message: Message; duplicate: boolean } | { ok: false; error: { code: ErrorCode; message: string } };

export class Outbox {
  private readonly queue: Slot[] = [];
  private readonly sleeper = new Sleeper();
  private running = false;
  private closed = false;
  private order = 0;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  constructor(
    private readonly link: OutboxLink,
    private readonly storage: OutboxStorage,
    private readonly events: OutboxEvents,
    options: OutboxOptions = {},
  ) {
    this.retryBaseMs = options.retryBaseMs ?? 500;
    this.retryMaxMs = options.retryMaxMs ?? 10_000;
  }

  /** What storage still holds from an earlier session, queued ahead of anything new. */
  async restore(): Promise<PendingEntry[]> {
    const stored = (await this.storage.load()).sort((a, b) => a.order - b.order);
    const known = new Set(this.queue.map((s) => s.entry.clientMsgId));
    const fresh = stored.filter((e) => !known.has(e.clientMsgId));
    this.queue.unshift(...fresh.map((entry) => ({ entry, stored: Promise.resolve(), isStored: true })));
    this.order = Math.max(this.order, ...stored.map((e) => e.order + 1));
    this.kick();
    return fresh;
  }

  /**
   * Queues one user action and resolves the entry, what the app shows until it is
   * acknowledged, once the storage has it. Rejects with OutboxStorageError, and sends
   * nothing, when the storage refuses it. Its place in the send order is taken at the call.
   */
  async add(action: PendingAction, clientMsgId: string, now: Date): Promise<PendingEntry> {
    const entry = { ...action, clientMsgId, createdAt: now.toISOString(), order: this.order++ } as PendingEntry;
    const slot: Slot = { entry, stored: this.storage.put(entry), isStored: false };
    this.queue.push(slot);
    this.kick();
    try {
      await slot.stored;
    } catch (err) {
      this.drop(slot);
      throw new OutboxStorageError(`outbox storage failed: ${(err as Error).message}`);
    }
    slot.isStored = true;
    return entry;
  }

  /** Entries in storage and not yet acknowledged, in send order. */
  get pending(): PendingEntry[] {
    return this.queue.filter((s) => s.isStored).map((s) => s.entry);
  }

  /** Connection back, or asked to hurry: cut any wait short and try now. */
  wake(): void {
    this.sleeper.wake();
    this.kick();
  }

  close(): void {
    this.closed = true;
    this.sleeper.wake();
  }

  private kick(): void {
    if (this.running || this.closed) return;
    this.running = true;
    void this.pump().finally(() => {
      this.running = false;
      if (this.queue.length > 0 && !this.closed) this.kick();
    });
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const slot = this.queue[0]!;
      try {
        // Stored before the first attempt: a crash after this point still sends it later.
        await slot.stored;
      } catch {
        this.drop(slot); // add() rejected it: the app never showed it
        continue;
      }
      await this.deliver(slot.entry);
      if (this.closed) return;
      this.drop(slot);
      await this.storage.remove(slot.entry.clientMsgId).catch(() => undefined);
    }
  }

  /** By reference: restore() may have queued older entries in front meanwhile. */
  private drop(slot: Slot): void {
    const at = this.queue.indexOf(slot);
    if (at >= 0) this.queue.splice(at, 1);
  }

  /** Returns once `entry` is acknowledged or failed for good; keeps trying meanwhile. */
  private async deliver(entry: PendingEntry): Promise<void> {
    for (let attempt = 0; !this.closed; ) {
      try {
        await this.link.whenConnected();
      } catch {
        return; // closed
      }
      if (needsUpload(entry)) {
        // The bytes first (a fresh upload URL each attempt), then the send, same clientMsgId.
        try {
          await this.link.upload(entry);
          await this.storage.put(entry).catch(() => undefined);
        } catch (err) {
          if (err instanceof ServerError && !RETRY_LATER.has(err.code)) return this.events.failed(entry, err);
          const delay = backoffDelay(attempt++, this.retryBaseMs, this.retryMaxMs);
          this.events.retrying(entry, (err as Error).message, delay);
          await this.sleeper.sleep(delay);
          continue;
        }
      }
      const { event, clientMsgId, createdAt: _c, order: _o, ...rest } = entry;
      const payload = { clientMsgId, ...rest };
      let reply: Reply;
      try {
        reply = (await this.link.emit(event, payload)) as Reply;
      } catch (err) {
        if (!(err instanceof RequestTimeout)) throw err;
        // Maybe stored, maybe not: the same clientMsgId makes the next attempt safe either way.
        this.events.retrying(entry, "no acknowledgement", 0);
        continue;
      }
      if (reply.ok) return this.events.done(entry, reply.message, reply.duplicate);
      if (!RETRY_LATER.has(reply.error.code)) return this.events.failed(entry, reply.error);
      const delay = backoffDelay(attempt++, this.retryBaseMs, this.retryMaxMs);
      this.events.retrying(entry, reply.error.code, delay);
      await this.sleeper.sleep(delay);
    }
  }
}
