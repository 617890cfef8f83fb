/**
 * Payload schemas for every client→server event. Unknown fields are stripped (a `from` in
 * a payload is ignored: the sender is always the authenticated user).
 */
import { z } from "zod";
import { AppError } from "./errors";
import { APP_ID, CLIENT_MSG_ID, MIME, THUMBNAIL, USER_ID, UUID } from "./ids";
import { contentLength, CONVERSATION_IDS_MAX, CONVERSATION_PAGE_MAX, THUMBNAIL_BYTES } from "./packets";

// Kept here too for the server; the definition is zod-free so the SDK can import it without zod.
export { contentLength };
import type { ClientEventName } from "./events";

const userId = z.string().regex(USER_ID, "a user id is 1-64 chars of [A-Za-z0-9._@-]");
const uuid = z.string().regex(UUID, "must be a UUID");
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Text PostgreSQL can store as sent: well-formed UTF-16 (no lone surrogates), no NUL. */
const text = z
  .string()
  .refine((s) => s.isWellFormed(), "must be well-formed Unicode (no lone surrogates)")
  .refine((s) => !s.includes("\u0000"), "must not contain NUL characters");

export const LIMITS = {
  readIds: 500,
  historyPage: 100,
  historyDefault: 50,
  /** Largest `conversation:list` page, and most ids it may name. */
  conversationPage: CONVERSATION_PAGE_MAX,
  conversationIds: CONVERSATION_IDS_MAX,
  /**
   * The most members a `group:create` payload may list: a ceiling on parsing only. The
   * group size itself is GROUP_MAX_MEMBERS (config, default 1024), checked by the core.
   */
  groupMembersCeiling: 10_000,
  /** Users one `group:add` may name. */
  groupAddIds: 256,
  titleLength: 128,
  /** Title set by `group:update`. */
  groupTitleLength: 100,
  presenceIds: 500,
  pushkeyLength: 512,
  appIdLength: 64,
  /** Longest reaction, in code points. */
  emojiLength: 32,
  /** A media thumbnail: the whole `data:` URL, in characters (all ASCII: bytes too). */
  thumbnailLength: THUMBNAIL_BYTES,
  mimeLength: 127,
  mediaNameLength: 255,
  statusSyncPage: 1000,
  statusSyncDefault: 500,
  /** Longer than any cursor the server gives (22 characters; 48 before v2): the rest is the cursor's own check. */
  cursorLength: 128,
} as const;

/** Push tokens (APNs hex, FCM, web push endpoints) are visible ASCII: no spaces or control characters. */
const pushkey = z
  .string()
  .min(1, "pushkey must not be empty")
  .max(LIMITS.pushkeyLength, `pushkey is at most ${LIMITS.pushkeyLength} characters`)
  .regex(/^[\x21-\x7e]+$/, "pushkey is visible ASCII (no spaces or control characters)");

const clientMsgId = z.string().regex(CLIENT_MSG_ID, "clientMsgId is 1-64 chars of [A-Za-z0-9._:-]");

/** Media ids are UUIDs: anything path-like or malformed never reaches a store. */
const mediaId = z.string().regex(UUID, "mediaId must be a UUID");
const dimension = z.number().int().min(1).max(2_147_483_647);

/** What `message:send` may say about the media it carries. */
const mediaAttachment = z.object({
  mediaId,
  width: dimension.optional(),
  height: dimension.optional(),
  durationMs: z.number().int().min(0).max(2_147_483_647).optional(),
  thumbnail: z
    .string()
    .max(LIMITS.thumbnailLength, `thumbnail is at most ${LIMITS.thumbnailLength} characters`)
    .regex(THUMBNAIL, "thumbnail must be a data:image/(png|jpeg|gif|webp);base64, URL")
    .optional(),
});

export const schemas = {
  "message:send": z
    .object({
      clientMsgId,
      to: userId.optional(),
      conversationId: uuid.optional(),
      // The length limit is checked after parsing, so it can answer TOO_LARGE. With media,
      // content is the caption and may be "".
      content: text,
      media: mediaAttachment.optional(),
    })
    .refine((p) => (p.to === undefined) !== (p.conversationId === undefined), {
      message: "exactly one of `to` or `conversationId` is required",
    })
    .refine((p) => p.content !== "" || p.media !== undefined, { message: "content must not be empty", path: ["content"] }),
  "message:edit": z.object({
    clientMsgId,
    messageId: uuid,
    // As for message:send: the length limit is checked after parsing (TOO_LARGE).
    content: text.pipe(z.string().min(1, "content must not be empty")),
  }),
  "message:delete": z.object({ clientMsgId, messageId: uuid }),
  "message:react": z.object({
    clientMsgId,
    messageId: uuid,
    // "" removes the caller's reaction. Counted in code points, like content.
    emoji: text.refine(
      (e) => e.length <= LIMITS.emojiLength || contentLength(e) <= LIMITS.emojiLength,
      `emoji is at most ${LIMITS.emojiLength} characters ("" removes your reaction)`,
    ),
  }),
  "message:read": z.object({ messageIds: z.array(uuid).min(1).max(LIMITS.readIds) }),
  "message:history": z.object({
    conversationId: uuid,
    beforeSeq: seq.optional(),
    afterSeq: seq.optional(),
    limit: z.number().int().min(1).max(LIMITS.historyPage).optional(),
  }),
  "conversation:list": z.object({
    limit: z.number().int().min(1).max(LIMITS.conversationPage).optional(),
    before: z.string().min(1).max(200).optional(),
    conversationIds: z.array(uuid).min(1).max(LIMITS.conversationIds).optional(),
    peer: userId.optional(),
  }),
  "group:create": z.object({
    title: text.pipe(z.string().trim().min(1).max(LIMITS.titleLength)),
    members: z.array(userId).min(1).max(LIMITS.groupMembersCeiling),
  }),
  "group:add": z.object({
    clientMsgId,
    conversationId: uuid,
    userIds: z.array(userId).min(1).max(LIMITS.groupAddIds),
  }),
  "group:remove": z.object({ clientMsgId, conversationId: uuid, userId }),
  "group:leave": z.object({ clientMsgId, conversationId: uuid }),
  "group:update": z.object({
    clientMsgId,
    conversationId: uuid,
    title: text.pipe(z.string().trim().min(1).max(LIMITS.groupTitleLength)),
  }),
  "group:role": z.object({ clientMsgId, conversationId: uuid, userId, role: z.enum(["admin", "member"]) }),
  typing: z.object({ conversationId: uuid, typing: z.boolean() }),
  "presence:subscribe": z.object({ userIds: z.array(userId).min(1).max(LIMITS.presenceIds) }),
  "push:register": z.object({
    pushkey,
    appId: z.string().regex(APP_ID, `appId is 1-${LIMITS.appIdLength} chars of [A-Za-z0-9._:-]`),
    kind: z.literal("http").optional(),
  }),
  "push:unregister": z.object({ pushkey }),
  // Any string: whether it is a token is the verifier's to say (UNAUTHORIZED, not BAD_REQUEST).
  "auth:refresh": z.object({ token: z.string() }),
  "media:upload": z.object({
    mime: z
      .string()
      .max(LIMITS.mimeLength, `mime is at most ${LIMITS.mimeLength} characters`)
      .regex(MIME, "mime must be type/subtype (no parameters)")
      .transform((m) => m.toLowerCase()),
    // Over MEDIA_MAX_BYTES is checked after parsing, so it can answer TOO_LARGE.
    size: z.number().int().min(1, "size must be at least 1").max(Number.MAX_SAFE_INTEGER),
    name: text.pipe(z.string().max(LIMITS.mediaNameLength, `name is at most ${LIMITS.mediaNameLength} characters`)).optional(),
  }),
  "media:url": z.object({ mediaId }),
  // Whether `after` is a cursor this server gave the caller is StatusCursors' to say (also BAD_REQUEST).
  "status:sync": z.object({
    after: z.string().min(1).max(LIMITS.cursorLength).optional(),
    limit: z.number().int().min(1).max(LIMITS.statusSyncPage).optional(),
  }),
  "message:info": z.object({ messageId: uuid }),
} satisfies Record<ClientEventName, z.ZodType>;

/**
 * Every client→server event, derived from the schemas (which `satisfies` forces to match
 * ClientToServerEvents key for key): a new event cannot be left out of the unknown-event guard.
 */
export const CLIENT_EVENTS = Object.freeze(Object.keys(schemas) as ClientEventName[]);

export type Payload<E extends ClientEventName> = z.infer<(typeof schemas)[E]>;

/** Parses a payload or throws BAD_REQUEST naming the first problem. */
export function parsePayload<E extends ClientEventName>(event: E, payload: unknown): Payload<E> {
  const result = schemas[event].safeParse(payload);
  if (result.success) return result.data as Payload<E>;
  const issue = result.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
  throw new AppError("BAD_REQUEST", `${event}: ${where}${issue?.message ?? "invalid payload"}`);
}

