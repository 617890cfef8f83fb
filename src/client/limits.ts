/**
 * Local checks that keep a send from ever reaching the server in a shape that would close
 * the socket instead of answering: content over MAX_CONTENT_LENGTH code points is answered
 * TOO_LARGE, but a packet over the server's maxHttpBufferSize makes Socket.IO drop the whole
 * connection, and a retrying client would then loop through reconnects.
 */
import { contentLength, maxPacketBytes } from "../protocol/packets";

export { maxPacketBytes };

/** The server's default MAX_CONTENT_LENGTH (code points). */
export const DEFAULT_MAX_CONTENT_LENGTH = 4096;

/** Room kept for the JSON envelope around the content (event name, ids, escaping). */
const ENVELOPE_BYTES = 1024;

export class ContentTooLargeError extends Error {
  readonly code = "TOO_LARGE" as const;
  constructor(message: string) {
    super(message);
    this.name = "ContentTooLargeError";
  }
}

/** Content length in Unicode code points (the protocol's contentLength, under the SDK's name). */
export const codePoints = contentLength;

/** Bytes `text` takes once JSON-encoded in a packet (escapes included). */
export function encodedBytes(text: string): number {
  return new TextEncoder().encode(JSON.stringify(text)).length;
}

/**
 * Throws ContentTooLargeError when `content` is too long in code points, or when its encoding
 * would not fit `packetBytes`. With the server's own packet limit (the default) every content
 * within the length limit fits; a smaller one comes from whatever sits in between (a proxy
 * or load balancer with a WebSocket frame limit), which closes the connection the same way.
 */
export function checkContent(content: string, maxContentLength: number, packetBytes = maxPacketBytes(maxContentLength)): void {
  if (typeof content !== "string" || content.length === 0) throw new TypeError("content must be a non-empty string");
  // Cheap first: a UTF-16 length within the limit is within it in code points too.
  if (content.length > maxContentLength) {
    const n = codePoints(content);
    if (n > maxContentLength) throw new ContentTooLargeError(`content is ${n} characters; the limit is ${maxContentLength}`);
  }
  const bytes = encodedBytes(content);
  const budget = packetBytes - ENVELOPE_BYTES;
  if (bytes > budget) throw new ContentTooLargeError(`content is ${bytes} bytes encoded; a packet holds at most ${budget}`);
}
