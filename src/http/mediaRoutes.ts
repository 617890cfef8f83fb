import type { IncomingMessage, ServerResponse } from "node:http";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Clock } from "../clock";
import type { Logger } from "../log";
import { contentDisposition } from "../media/disposition";
import type { DiskMediaStore } from "../media/DiskMediaStore";
import type { MediaCatalog } from "../media/ports";
import type { UrlSigner } from "../media/UrlSigner";
import { StorageUnavailableError } from "../protocol/errors";
import { UUID } from "../protocol/ids";
import { byteRange } from "./byteRange";

export type MediaRouteDeps = {
  store: DiskMediaStore;
  catalog: Pick<MediaCatalog, "get" | "markStored">;
  signer: UrlSigner;
  clock: Clock;
  log: Logger;
  /** Shutdown waits for what is registered here: an upload in progress finishes (and is recorded) first. */
  track: (work: Promise<unknown>) => void;
};

/**
 * Every answer Ticks gives about media: never sniffed into another type, never a page that
 * runs anything (even an HTML file opened directly), and any origin may use a URL: the
 * signature is the credential, not a cookie.
 */
const SAFETY = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'",
  "access-control-allow-origin": "*",
} as const;

/**
 * `/media/<id>?exp=…&sig=…` for the disk store: PUT takes an upload's bytes, GET and HEAD
 * serve them (with Range). The signature (UrlSigner) is checked before anything else, so a
 * URL that is not one Ticks made learns nothing, not even whether the id exists. Bodies
 * stream in both directions: memory does not grow with the file's size.
 */
export function mediaRoutes(deps: MediaRouteDeps) {
  return (req: IncomingMessage, res: ServerResponse, path: string): boolean => {
    if (!path.startsWith("/media/")) return false;
    const id = path.slice("/media/".length);
    const query = new URLSearchParams((req.url ?? "").split("?")[1] ?? "");
    const fail = (err: unknown) => {
      // The database down is the client's to retry (as UNAVAILABLE on the socket); anything else is a bug.
      if (err instanceof StorageUnavailableError) return refuse(res, 503, "storage is unavailable, retry later");
      deps.log.error({ err, mediaId: id }, "media request failed");
      if (!res.headersSent) refuse(res, 500, "media request failed");
      else res.destroy();
    };
    if (req.method === "OPTIONS") {
      res.writeHead(204, {
        ...SAFETY,
        "access-control-allow-methods": "GET, HEAD, PUT",
        "access-control-allow-headers": "content-type, range",
        "access-control-max-age": "600",
      });
      res.end();
    } else if (!UUID.test(id)) refuse(res, 404, "not found");
    else if (req.method === "GET" || req.method === "HEAD") download(deps, id, query, req, res).catch(fail);
    else if (req.method === "PUT") deps.track(upload(deps, id, query, req, res).catch(fail));
    else refuse(res, 405, "method not allowed");
    return true;
  };
}

async function download(deps: MediaRouteDeps, id: string, query: URLSearchParams, req: IncomingMessage, res: ServerResponse) {
  if (deps.signer.verify("get", id, query, deps.clock.now()) !== "ok") return refuse(res, 403, "this URL is not valid (altered or expired)");
  const media = await deps.catalog.get(id);
  const file = media && (await deps.store.open(id));
  if (!media || !file) return refuse(res, 404, "not found");
  const headers = {
    ...SAFETY,
    "content-type": media.mime,
    "content-disposition": contentDisposition(media.mime, media.name),
    "cache-control": "private, max-age=300",
    "accept-ranges": "bytes",
  };
  const range = byteRange(req.headers.range, file.size);
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "content-range": `bytes */${file.size}`, "content-length": 0 });
    return void res.end();
  }
  const { start, end } = range ?? { start: 0, end: file.size - 1 };
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "content-length": end - start + 1,
    ...(range ? { "content-range": `bytes ${start}-${end}/${file.size}` } : {}),
  });
  if (req.method === "HEAD" || file.size === 0) return void res.end();
  await pipeline(file.stream(start, end), res).catch((err: NodeJS.ErrnoException) => {
    // The client going away mid-download is ordinary.
    if (err.code !== "ERR_STREAM_PREMATURE_CLOSE") throw err;
  });
}

async function upload(deps: MediaRouteDeps, id: string, query: URLSearchParams, req: IncomingMessage, res: ServerResponse) {
  const verdict = deps.signer.verify("put", id, query, deps.clock.now());
  if (verdict !== "ok") return refuse(res, 403, verdict === "expired" ? "this upload URL has expired" : "this URL is not valid");
  const media = await deps.catalog.get(id);
  if (!media) return refuse(res, 404, "not found");
  if (media.sentAt !== null) return refuse(res, 409, "this upload was already sent; it cannot be replaced");
  const announced = req.headers["content-length"];
  if (announced !== undefined && Number(announced) !== media.size) {
    return refuse(res, 400, `the body must be exactly ${media.size} bytes (Content-Length: ${announced})`);
  }
  // The store reads a stream of its own: when it stops (a byte too many) the request stays
  // open, so it can still be answered.
  const body = new PassThrough();
  req.on("error", (err) => body.destroy(err));
  req.on("close", () => {
    if (!req.complete) body.destroy(new Error("upload aborted by the client"));
  });
  req.pipe(body);
  let outcome;
  try {
    outcome = await deps.store.write(id, media.size, body);
  } catch (err) {
    if (!req.complete) return; // the client went away: nothing was kept, nobody to answer
    throw err;
  }
  if (outcome === "too_long") return refuse(res, 413, `the body is longer than the ${media.size} bytes announced`);
  if (outcome === "too_short") return refuse(res, 400, `the body is shorter than the ${media.size} bytes announced`);
  if (!(await deps.catalog.markStored(id, deps.clock.now()))) {
    // Sent (or swept) while the bytes were arriving: those stay as they were.
    return refuse(res, 409, "this upload was already sent; it cannot be replaced");
  }
  res.writeHead(200, { ...SAFETY, "cache-control": "no-store", "content-length": 0 });
  res.end();
}

/**
 * A refusal closes the connection: an upload's unread body is not worth reading to the
 * end (up to MEDIA_MAX_BYTES) just to keep the connection.
 */
function refuse(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { ...SAFETY, "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", connection: "close" });
  res.end(`${message}\n`);
}
