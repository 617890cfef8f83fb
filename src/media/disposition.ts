/**
 * Which media a browser may show inline. Images, audio and video render as media and run
 * nothing; SVG is an image that can carry script, and everything else (HTML above all)
 * could run as a page of the server that serves it: those are always downloads.
 */
export function servedInline(mime: string): boolean {
  const m = mime.toLowerCase();
  if (m === "image/svg+xml") return false;
  return m.startsWith("image/") || m.startsWith("audio/") || m.startsWith("video/");
}

/** `Content-Disposition` for a download: inline or attachment, with the sender's file name if any. */
export function contentDisposition(mime: string, name: string | null): string {
  const kind = servedInline(mime) ? "inline" : "attachment";
  if (!name) return kind;
  // An ASCII fallback (quotes, backslashes and controls replaced) and the exact name in RFC 5987 form.
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

/** How a push or a chat list names a media message: by what it is. */
export function mediaLabel(mime: string): string {
  if (mime.startsWith("image/")) return "Photo";
  if (mime.startsWith("audio/")) return "Voice message";
  if (mime.startsWith("video/")) return "Video";
  return "Document";
}

/**
 * The origin a browser fetches media from when it is not this server (an S3 bucket's presigned
 * URLs), for the web page's Content-Security-Policy; null for the disk store (same origin).
 */
export function mediaOrigin(store: { kind: "disk" } | { kind: "s3"; bucket: string; region: string; endpoint: string | null; forcePathStyle: boolean }): string | null {
  if (store.kind === "disk") return null;
  if (!store.endpoint) return `https://${store.bucket}.s3.${store.region}.amazonaws.com`;
  const url = new URL(store.endpoint);
  return store.forcePathStyle ? url.origin : `${url.protocol}//${store.bucket}.${url.host}`;
}
