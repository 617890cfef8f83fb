/** Row shapes and their mapping to protocol objects; pg and PGlite differ in int8 and count types. */
import type { GroupChange, MediaInfo, Message, MessageKind, Reaction } from "../protocol";

export type MessageRow = {
  message_id: string;
  client_msg_id: string;
  conversation_id: string;
  seq: string | number | bigint;
  from_user_id: string;
  to_user_id: string | null;
  content: string;
  created_at: Date | string;
  expires_at: Date | string;
  kind: MessageKind;
  ref_id: string | null;
  edited_at: Date | string | null;
  deleted_at: Date | string | null;
  /** `{ userId: emoji }`; pg and PGlite both parse jsonb. */
  reactions: Record<string, string> | null;
  /** The message's `media` object as clients get it (jsonb, parsed by both drivers); null without media. */
  media?: MediaInfo | null;
  /** A `group` entry's change (jsonb); NULL on every other kind. Absent from rows read before it existed. */
  group?: GroupChange | null;
};

/** pg returns int8 and count(*) as strings, PGlite as bigint or number. */
export const toNumber = (v: string | number | bigint | null | undefined): number => (v == null ? 0 : Number(v));

/** A timestamp column as a Date: the drivers give Date or, from JSON, an ISO string. */
export const toDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));

const iso = (v: Date | string): string => toDate(v).toISOString();
const isoOrNull = (v: Date | string | null): string | null => (v == null ? null : iso(v));

/** One reaction per user, grouped by emoji: emoji ascending, userIds ascending (docs/protocol.md). */
export function groupReactions(byUser: Record<string, string> | null | undefined): Reaction[] {
  const byEmoji = new Map<string, string[]>();
  for (const [userId, emoji] of Object.entries(byUser ?? {})) {
    const users = byEmoji.get(emoji) ?? [];
    users.push(userId);
    byEmoji.set(emoji, users);
  }
  const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return [...byEmoji.keys()].sort(order).map((emoji) => ({ emoji, userIds: byEmoji.get(emoji)!.sort(order) }));
}

export function toMessage(row: MessageRow): Message {
  return {
    id: row.message_id,
    clientMsgId: row.client_msg_id,
    conversationId: row.conversation_id,
    seq: toNumber(row.seq),
    from: row.from_user_id,
    to: row.to_user_id,
    content: row.content,
    createdAt: iso(row.created_at),
    expiresAt: iso(row.expires_at),
    kind: row.kind,
    refId: row.ref_id,
    editedAt: isoOrNull(row.edited_at),
    deletedAt: isoOrNull(row.deleted_at),
    reactions: groupReactions(row.reactions),
    // A delete for everyone sets it NULL; rows from before media (or a row read as JSON) may lack the key.
    media: row.media ?? null,
    group: row.group ?? null,
  };
}

export const MESSAGE_COLUMNS =
  "m.message_id, m.client_msg_id, m.conversation_id, m.seq, m.from_user_id, m.to_user_id, m.content, m.created_at, m.expires_at, " +
  "m.kind, m.ref_id, m.edited_at, m.deleted_at, m.reactions, m.\"group\", m.media";

/** Raw results of both drivers carry `rows`. */
export const rowsOf = <T>(result: unknown): T[] => (result as { rows: T[] }).rows;
