/** The CLI's file commands: `send-file <user> <path> [caption]` and `save <n> <path>`. Node only. */
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { MediaInfo } from "../protocol";
import type { LocalMessage, TicksClient } from "./TicksClient";

/** A file that cannot be read or written, or a download that failed: one error line, not a crash. */
export class MediaFileError extends Error {
  override readonly name = "MediaFileError";
}

const fileError = (err: unknown) => new MediaFileError((err as Error).message);

/** Common types by extension; anything else is sent as application/octet-stream (a download). */
const TYPES: Record<string, string> = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".mp3": "audio/mpeg",
  ".ogg": "audio/ogg",
  ".opus": "audio/ogg",
  ".m4a": "audio/mp4",
  ".wav": "audio/wav",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".pdf": "application/pdf",
  ".txt": "text/plain",
};

export const mimeOf = (file: string) => TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream";

/** Reads the file and hands it to the SDK's sendMedia (the outbox uploads, then sends). */
export async function sendFile(client: TicksClient, to: string, file: string, caption: string): Promise<LocalMessage> {
  const bytes = new Uint8Array(await readFile(file).catch((err) => Promise.reject(fileError(err))));
  return client.sendMedia({ to }, bytes, { mime: mimeOf(file), name: path.basename(file), caption });
}

/** Downloads a message's media to `file`, streaming; resolves with the bytes written. */
export async function saveMedia(client: TicksClient, media: MediaInfo, file: string): Promise<number> {
  const res = await fetch(await client.mediaUrl(media.mediaId));
  if (!res.ok || !res.body) throw new MediaFileError(`download answered ${res.status}`);
  let bytes = 0;
  const counted = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>).on("data", (c: Buffer) => (bytes += c.length));
  await pipeline(counted, createWriteStream(file)).catch((err) => Promise.reject(fileError(err)));
  return bytes;
}

/** `[photo beach.png, 12 KB]` after a media message's caption. */
export function mediaNote(media: MediaInfo): string {
  const kind = media.mime.startsWith("image/") ? "photo" : media.mime.startsWith("audio/") ? "audio" : media.mime.startsWith("video/") ? "video" : "file";
  const size = media.size < 1024 ? `${media.size} B` : `${Math.round(media.size / 1024)} KB`;
  return `[${kind}${media.name ? ` ${media.name.replace(/[\x00-\x1f\x7f]/g, "?")}` : ""}, ${size}]`;
}
