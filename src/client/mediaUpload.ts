/**
 * The upload half of `sendMedia`: ask the server for an upload URL (`media:upload`), PUT the
 * bytes there with progress, and note the mediaId on the outbox entry, which then sends an
 * ordinary `message:send` carrying it. Runs in browsers (XMLHttpRequest: real progress) and
 * in Node (fetch with a streamed body: progress as the body is read).
 */
import type { MediaUploadResult } from "../protocol/events";
import type { PendingEntry } from "./OutboxStorage";

/** The bytes as given to sendMedia. */
export type MediaBytes = Blob | Uint8Array;

/** The PUT failed (network, or an HTTP status): worth trying again with a fresh URL. */
export class UploadFailed extends Error {
  constructor(readonly status: number | null, message: string) {
    super(message);
    this.name = "UploadFailed";
  }
}

export type UploadDeps = {
  /** `media:upload`, rejecting with ServerError or RequestTimeout. */
  askUpload(req: { mime: string; size: number; name?: string }): Promise<MediaUploadResult>;
  /** What a path URL is relative to: the server the client connects to. */
  baseUrl: string;
  progress(clientMsgId: string, loaded: number, total: number): void;
};

export const sizeOf = (bytes: MediaBytes): number => (bytes instanceof Uint8Array ? bytes.byteLength : bytes.size);

/** An outbox entry whose bytes are not uploaded yet. */
export const needsUpload = (entry: PendingEntry): boolean => entry.event === "message:send" && entry.upload !== undefined;

/**
 * Uploads the entry's bytes and moves the resulting mediaId into its `media`; the bytes
 * leave the entry (the caller stores it again). Throws ServerError (refused), RequestTimeout
 * or UploadFailed (worth a retry).
 */
export async function uploadEntry(entry: PendingEntry, deps: UploadDeps): Promise<void> {
  if (entry.event !== "message:send" || !entry.upload) return;
  const { bytes, mime, name } = entry.upload;
  const total = sizeOf(bytes);
  const target = await deps.askUpload({ mime, size: total, ...(name ? { name } : {}) });
  deps.progress(entry.clientMsgId, 0, total);
  const url = new URL(target.url, deps.baseUrl).toString();
  await put(url, target.headers, bytes, (loaded) => deps.progress(entry.clientMsgId, loaded, total));
  deps.progress(entry.clientMsgId, total, total);
  entry.media = { ...entry.media, mediaId: target.mediaId };
  delete entry.upload;
}

/** The part of the browser's XMLHttpRequest used here (the SDK compiles without the DOM types). */
type Xhr = {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  upload: { onprogress: ((e: { loaded: number }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
  status: number;
  send(body: unknown): void;
};
type XhrClass = new () => Xhr;

function put(url: string, headers: Record<string, string>, bytes: MediaBytes, progress: (loaded: number) => void): Promise<void> {
  const XHR = (globalThis as { XMLHttpRequest?: XhrClass }).XMLHttpRequest;
  return XHR ? putWithXhr(XHR, url, headers, bytes, progress) : putWithFetch(url, headers, bytes, progress);
}

function putWithXhr(
  XHR: XhrClass,
  url: string,
  headers: Record<string, string>,
  bytes: MediaBytes,
  progress: (loaded: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XHR();
    xhr.open("PUT", url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => progress(e.loaded);
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new UploadFailed(xhr.status, `upload answered ${xhr.status}`)));
    xhr.onerror = () => reject(new UploadFailed(null, "upload failed (network)"));
    xhr.onabort = xhr.onerror;
    xhr.send(bytes);
  });
}

/** Node (and any runtime without XHR): a streamed body, so progress follows what was read; Content-Length set, as stores require. */
async function putWithFetch(url: string, headers: Record<string, string>, bytes: MediaBytes, progress: (loaded: number) => void) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(await bytes.arrayBuffer());
  const CHUNK = 64 * 1024;
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset > 0) progress(offset);
      if (offset >= data.byteLength) return controller.close();
      const chunk = data.subarray(offset, offset + CHUNK);
      offset += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  let res: Response;
  try {
    res = await fetch(url, { method: "PUT", body, headers: { ...headers, "content-length": String(data.byteLength) }, duplex: "half" } as RequestInit);
  } catch (err) {
    throw new UploadFailed(null, `upload failed: ${(err as Error).message}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (!res.ok) throw new UploadFailed(res.status, `upload answered ${res.status}`);
}
