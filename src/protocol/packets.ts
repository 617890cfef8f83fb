/**
 * The largest packet a server reads (its Socket.IO maxHttpBufferSize) for a given
 * MAX_CONTENT_LENGTH. Over it the connection is closed, with no answer. Any content within
 * MAX_CONTENT_LENGTH must fit, so the client gets ok or TOO_LARGE: in JSON a code point
 * takes at most 6 bytes (a control character escaped as \u0001; UTF-8 needs at most 4),
 * plus room for the envelope, plus a media thumbnail (v3: a caption of any allowed length
 * may travel with the largest thumbnail, 16 KiB of ASCII). docs/protocol.md ("Size limits").
 */
export const maxPacketBytes = (maxContentLength: number): number =>
  Math.max(64 * 1024, maxContentLength * 6 + 16 * 1024 + THUMBNAIL_BYTES);

/** The largest `media.thumbnail` of `message:send`: a data URL, ASCII, so characters are bytes. */
export const THUMBNAIL_BYTES = 16 * 1024;

/** Content length in Unicode code points, the unit MAX_CONTENT_LENGTH is given in. */
export function contentLength(content: string): number {
  let n = 0;
  for (const _ of content) n++;
  return n;
}

/** `conversation:list`: its largest page, and the most conversation ids it may name (zod-free: the SDK pages with them). */
export const CONVERSATION_PAGE_MAX = 500;
export const CONVERSATION_IDS_MAX = 100;
