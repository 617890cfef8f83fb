/** Row shapes and their mapping to protocol objects; pg and PGlite differ in int8 and count types. */
import type { Message } from "../protocol";

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
};

/** pg returns int8 and count(*) as strings, PGlite as bigint or number. */
export const toNumber = (v: string | number | bigint | null | undefined): number => (v == null ? 0 : Number(v));

const iso = (v: Date | string): string => (v instanceof Date ? v : new Date(v)).toISOString();

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
  };
}

export const MESSAGE_COLUMNS =
  "m.message_id, m.client_msg_id, m.conversation_id, m.seq, m.from_user_id, m.to_user_id, m.content, m.created_at, m.expires_at";

/** Raw results of both drivers carry `rows`. */
export const rowsOf = <T>(result: unknown): T[] => (result as { rows: T[] }).rows;
