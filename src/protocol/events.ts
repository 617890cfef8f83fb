/**
 * The wire protocol as typed event maps, shared by the server, the SDK, the CLI and the
 * tests, so a protocol change is a compile error everywhere it matters.
 * The prose contract is docs/protocol.md.
 */
import type { ErrorCode } from "./errors";

export type Message = {
  /** Server-generated UUIDv7; the persisted id. */
  id: string;
  /** The sender's idempotency key. */
  clientMsgId: string;
  conversationId: string;
  /** 1, 2, 3… per conversation, no gaps, in commit order. */
  seq: number;
  from: string;
  /** Recipient of a direct message; null in a group. */
  to: string | null;
  /** Text: its current content ("" once deleted). Edit: the new text. Reaction: the emoji ("" removes). Delete: "". */
  content: string;
  createdAt: string;
  /** Entries expire with the text message they act on: they carry its expiresAt. */
  expiresAt: string;
  /** What this log entry is; v1 messages are "text". */
  kind: MessageKind;
  /** Edit, delete, reaction: the id of the text message acted on. Text: null. */
  refId: string | null;
  /** Text: when an edit last changed its content, else null. */
  editedAt: string | null;
  /** Text: when it was deleted for everyone (content is then ""), else null. */
  deletedAt: string | null;
  /** Text: current reactions, emoji ascending, userIds ascending. Entries: []. */
  reactions: Reaction[];
  /** A `group` entry: the membership or title change it records. Every other kind: null. */
  group: GroupChange | null;
  /** Text with a photo, voice note or file: what it carries; null otherwise (and once deleted for everyone). */
  media: MediaInfo | null;
};

/** The media a message carries (docs/media.md). Bytes are fetched with `media:url`. */
export type MediaInfo = {
  mediaId: string;
  /** `type/subtype`, as uploaded. */
  mime: string;
  /** Bytes. */
  size: number;
  /** The file name the sender gave, if any. */
  name: string | null;
  width: number | null;
  height: number | null;
  durationMs: number | null;
  /** A `data:image/…;base64,` URL of at most 16 KiB, shown before the bytes arrive. */
  thumbnail: string | null;
};

export type MessageKind = "text" | "edit" | "delete" | "reaction" | "group";
export type GroupRole = "admin" | "member";
/**
 * What a `group` entry changed. `add`/`remove`/`leave`: who joined or went (`leave`: the
 * sender; and, when the last admin left, `role: "admin"` names the successor as `userIds[1]`).
 * `title`: the new `title`. `role`: `userIds[0]` now has `role`.
 */
export type GroupChange = {
  action: GroupAction;
  userIds: string[];
  title: string | null;
  role: GroupRole | null;
};
export type GroupAction = "add" | "remove" | "leave" | "title" | "role";
export type Reaction = { emoji: string; userIds: string[] };

export type Status = "sent" | "delivered" | "read";

export type ConversationSummary = {
  id: string;
  kind: "direct" | "group";
  title: string | null;
  members: string[];
  /** Its admins (a group's; [] for a direct conversation). */
  admins: string[];
  /** False once the caller left or was removed: what they see then ends at that entry. */
  member: boolean;
  /** The last seq the caller may see. */
  lastSeq: number;
  unread: number;
  lastMessage: Message | null;
};

/**
 * Every field optional: `{}` is the whole list. `limit` pages it (`next` continues it as
 * `before`); `conversationIds` / `peer` pick conversations (a device finding one it does not
 * hold: the one a message arrived for, the chat with someone).
 */
export type ConversationListRequest = { limit?: number; before?: string; conversationIds?: string[]; peer?: string };
/** `hasMore`/`next`: more conversations follow this page (only with `limit`). */
export type ConversationListResult = { conversations: ConversationSummary[]; hasMore: boolean; next: string | null };

export type Presence = { userId: string; online: boolean; lastSeen: string | null };

export type Ok<T> = { ok: true } & T;
export type Err = { ok: false; error: { code: ErrorCode; message: string } };
export type Reply<T> = Ok<T> | Err;
export type Ack<T> = (reply: Reply<T>) => void;

/** With `media`, `content` is the caption and may be "". */
export type SendRequest = { clientMsgId: string; to?: string; conversationId?: string; content: string; media?: MediaAttachment };
/** What a sender says about an upload (or a forwarded media) in `message:send`. */
export type MediaAttachment = { mediaId: string; width?: number; height?: number; durationMs?: number; thumbnail?: string };
export type MediaUploadRequest = { mime: string; size: number; name?: string };
/** PUT exactly `size` bytes to `url` (absolute, or a path on this server) with `headers`, before `expiresAt`. */
export type MediaUploadResult = { mediaId: string; url: string; method: "PUT"; headers: Record<string, string>; expiresAt: string };
export type MediaUrlRequest = { mediaId: string };
/** A GET URL (absolute, or a path on this server) that needs no other credentials, until `expiresAt`. */
export type MediaUrlResult = { url: string; expiresAt: string };
export type SendResult = { message: Message; duplicate: boolean };
export type EditRequest = { clientMsgId: string; messageId: string; content: string };
export type DeleteRequest = { clientMsgId: string; messageId: string };
export type ReactRequest = { clientMsgId: string; messageId: string; emoji: string };
export type ReadRequest = { messageIds: string[] };
export type HistoryRequest = { conversationId: string; beforeSeq?: number; afterSeq?: number; limit?: number };
export type HistoryResult = { messages: Message[]; hasMore: boolean };
export type GroupCreateRequest = { title: string; members: string[] };
export type GroupAddRequest = { clientMsgId: string; conversationId: string; userIds: string[] };
export type GroupRemoveRequest = { clientMsgId: string; conversationId: string; userId: string };
export type GroupLeaveRequest = { clientMsgId: string; conversationId: string };
export type GroupUpdateRequest = { clientMsgId: string; conversationId: string; title: string };
export type GroupRoleRequest = { clientMsgId: string; conversationId: string; userId: string; role: GroupRole };
export type TypingRequest = { conversationId: string; typing: boolean };
export type PresenceSubscribeRequest = { userIds: string[] };
/** A device's push registration: `pushkey` from APNs/FCM (via the app), `appId` as the gateway knows the app. */
export type PushRegisterRequest = { pushkey: string; appId: string; kind?: "http" };
export type PushUnregisterRequest = { pushkey: string };
export type AuthRefreshRequest = { token: string };
/** The new token's `exp` (ISO 8601), or null when it has none (then nothing expires). */
export type AuthRefreshResult = { expiresAt: string | null };

export interface ClientToServerEvents {
  "message:send": (req: SendRequest, ack: Ack<SendResult>) => void;
  "message:edit": (req: EditRequest, ack: Ack<SendResult>) => void;
  "message:delete": (req: DeleteRequest, ack: Ack<SendResult>) => void;
  "message:react": (req: ReactRequest, ack: Ack<SendResult>) => void;
  "message:read": (req: ReadRequest, ack: Ack<{ updated: number }>) => void;
  "message:history": (req: HistoryRequest, ack: Ack<HistoryResult>) => void;
  "conversation:list": (req: ConversationListRequest, ack: Ack<ConversationListResult>) => void;
  "group:create": (req: GroupCreateRequest, ack: Ack<{ conversationId: string }>) => void;
  /** Membership and title changes: each answers the `group` entry it wrote (a retry: the first, duplicate). */
  "group:add": (req: GroupAddRequest, ack: Ack<SendResult>) => void;
  "group:remove": (req: GroupRemoveRequest, ack: Ack<SendResult>) => void;
  "group:leave": (req: GroupLeaveRequest, ack: Ack<SendResult>) => void;
  "group:update": (req: GroupUpdateRequest, ack: Ack<SendResult>) => void;
  "group:role": (req: GroupRoleRequest, ack: Ack<SendResult>) => void;
  typing: (req: TypingRequest, ack: Ack<Record<string, never>>) => void;
  "presence:subscribe": (req: PresenceSubscribeRequest, ack: Ack<{ presence: Presence[] }>) => void;
  "push:register": (req: PushRegisterRequest, ack: Ack<Record<string, never>>) => void;
  "push:unregister": (req: PushUnregisterRequest, ack: Ack<{ removed: number }>) => void;
  /** Replaces the connection's token: same user only (else FORBIDDEN), valid (else UNAUTHORIZED). */
  "auth:refresh": (req: AuthRefreshRequest, ack: Ack<AuthRefreshResult>) => void;
  /** v3: the caller's status stream after a cursor: what moved while a device was away. */
  "status:sync": (req: StatusSyncRequest, ack: Ack<StatusSyncResult>) => void;
  /** v3: per-recipient delivered and read times; the sender only (else NOT_FOUND). */
  "message:info": (req: MessageInfoRequest, ack: Ack<MessageInfoResult>) => void;
  /** An upload URL for `size` bytes of `mime`. */
  "media:upload": (req: MediaUploadRequest, ack: Ack<MediaUploadResult>) => void;
  /** A short-lived download URL, for the uploader and whoever can see a message carrying it (else NOT_FOUND). */
  "media:url": (req: MediaUrlRequest, ack: Ack<MediaUrlResult>) => void;
}


export type BacklogPage = { messages: Message[]; remaining: boolean };
/**
 * v3: `cursor` is the update's position in the receiving user's status stream (opaque; that
 * of its last change): `status:sync { after: cursor }` continues from there.
 */
export type StatusUpdate = { messageIds: string[]; status: "delivered" | "read"; by: string; at: string; cursor: string };
/** v3: a page of the caller's status stream; `cursor` is the last update's, or the `after` sent when none. */
export type StatusSyncRequest = { after?: string; limit?: number };
export type StatusSyncResult = { updates: StatusUpdate[]; cursor: string | null; hasMore: boolean };
/** v3: one recipient of a message, as its sender sees them in message info. */
export type RecipientStatus = { userId: string; status: Status; deliveredAt: string | null; readAt: string | null };
export type MessageInfoRequest = { messageId: string };
export type MessageInfoResult = { recipients: RecipientStatus[] };
export type TypingEvent = { conversationId: string; userId: string; typing: boolean };

export interface ServerToClientEvents {
  /** The client calls `ack` once it has the message: that is the delivery receipt. */
  "message:new": (message: Message, ack: (received?: unknown) => void) => void;
  /** Acknowledging a page marks all of it delivered and asks for the next one. */
  "message:backlog": (page: BacklogPage, ack: (received?: unknown) => void) => void;
  "sync:complete": (info: { delivered: number }) => void;
  "message:status": (update: StatusUpdate) => void;
  "conversation:new": (conversation: ConversationSummary) => void;
  typing: (event: TypingEvent) => void;
  presence: (presence: Presence) => void;
  /** TOKEN_REFRESH_WINDOW_MS before the token's `exp` (ISO 8601 here): send `auth:refresh`. */
  "auth:expiring": (info: { expiresAt: string }) => void;
  /** The token's `exp` passed unrefreshed; the server disconnects the socket right after. */
  "auth:expired": (info: Record<string, never>) => void;
}

export type ClientEventName = keyof ClientToServerEvents;
