/**
 * Where the outbox keeps what it has not yet had acknowledged, so a pending send survives a
 * reconnect, a page reload or an app restart. A browser uses IndexedDbOutboxStorage; tests
 * and the CLI use MemoryOutboxStorage; an app may bring its own (SQLite, AsyncStorage…).
 */

import type { MediaAttachment } from "../protocol/events";
import type { TrackedStatus } from "./StatusTracker";

/** The write a pending entry will make: a v1 send or a v2 edit / delete / reaction. */
export type PendingAction =
  | {
      event: "message:send";
      to?: string;
      conversationId?: string;
      content: string;
      /** What the message says about its media; `mediaId` once uploaded (or at once when forwarding). */
      media?: Omit<MediaAttachment, "mediaId"> & { mediaId?: string };
      /** Bytes still to upload (sendMedia): they leave the entry once uploaded. */
      upload?: { bytes: Blob | Uint8Array; mime: string; name?: string };
    }
  | { event: "message:edit"; messageId: string; content: string }
  | { event: "message:delete"; messageId: string }
  | { event: "message:react"; messageId: string; emoji: string };

export type PendingEntry = PendingAction & {
  /** The idempotency key: the same for every attempt of this one user action. */
  clientMsgId: string;
  /** When the user acted (ISO 8601). */
  createdAt: string;
  /** Send order: entries are sent one after another in this order. */
  order: number;
};

/**
 * v3: what the client keeps of the status stream: the last cursor `status:sync` answered,
 * and the statuses it shows (StatusStreamSync).
 */
export type StatusState = { cursor: string | null; statuses: Array<[string, TrackedStatus]> };

export interface OutboxStorage {
  /** Every entry still pending, in any order. */
  load(): Promise<PendingEntry[]>;
  put(entry: PendingEntry): Promise<void>;
  remove(clientMsgId: string): Promise<void>;
  /** v3, optional: the kept status stream state. Without it a client reads the stream from its start at each start. */
  loadStatus?(): Promise<StatusState | undefined>;
  saveStatus?(state: StatusState): Promise<void>;
}

/** Keeps pending entries (and the status stream state) for the life of the process. */
export class MemoryOutboxStorage implements OutboxStorage {
  private readonly entries = new Map<string, PendingEntry>();
  private status: StatusState | undefined;

  // Kept as given, not copied: in one process a second copy of every status would only
  // double what the client holds (the tracker copies entries when it restores them).
  async loadStatus(): Promise<StatusState | undefined> {
    return this.status;
  }

  async saveStatus(state: StatusState): Promise<void> {
    this.status = state;
  }

  async load(): Promise<PendingEntry[]> {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  async put(entry: PendingEntry): Promise<void> {
    this.entries.set(entry.clientMsgId, { ...entry });
  }

  async remove(clientMsgId: string): Promise<void> {
    this.entries.delete(clientMsgId);
  }

  get size(): number {
    return this.entries.size;
  }
}
