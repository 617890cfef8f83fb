/**
 * Where the outbox keeps what it has not yet had acknowledged, so a pending send survives a
 * reconnect, a page reload or an app restart. A browser uses IndexedDbOutboxStorage; tests
 * and the CLI use MemoryOutboxStorage; an app may bring its own (SQLite, AsyncStorage…).
 */

import type { MediaAttachment } from "../protocol/events";

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

export interface OutboxStorage {
  /** Every entry still pending, in any order. */
  load(): Promise<PendingEntry[]>;
  put(entry: PendingEntry): Promise<void>;
  remove(clientMsgId: string): Promise<void>;
}

/** Keeps pending entries for the life of the process. */
export class MemoryOutboxStorage implements OutboxStorage {
  private readonly entries = new Map<string, PendingEntry>();

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
