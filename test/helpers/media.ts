import { request } from "node:http";
import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { stat } from "node:fs/promises";
import path from "node:path";
import type { MediaUploadResult } from "../../src/protocol";
import type { Device } from "./device";
import { okReply } from "./replies";
import { S3RVER_CREDENTIALS, type TestBucket } from "./s3rver";

export type HttpAnswer = { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };

/** `url` as the client resolves it: a path is on the server it is connected to. */
export const absolute = (url: string, base: string) => new URL(url, base).toString();

/**
 * One HTTP request with node:http (not fetch, which cannot send a body of a length other
 * than its Content-Length, nor without one). `chunked`: no Content-Length at all.
 */
export function http(
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: Buffer; chunked?: boolean; contentLength?: number } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body && !options.chunked) headers["content-length"] = options.contentLength ?? options.body.length;
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (options.body) req.write(options.body);
    req.end();
  });
}

/** Asks `device`'s server for an upload of `bytes` (not sent yet). */
export async function askUpload(device: Device, bytes: Buffer, mime: string, name?: string): Promise<MediaUploadResult> {
  return okReply(await device.request("media:upload", { mime, size: bytes.length, ...(name ? { name } : {}) }), "media:upload");
}

/** PUTs the bytes to an upload URL (a path resolved against `base`) with the headers it came with. */
export function putBytes(upload: MediaUploadResult, base: string, body: Buffer, extra: Parameters<typeof http>[2] = {}) {
  return http("PUT", absolute(upload.url, base), { headers: upload.headers, body, ...extra });
}

/** Uploads `bytes` through `device`'s server (or PUTs to `putBase`), failing the test unless stored. */
export async function upload(device: Device, base: string, bytes: Buffer, mime = "image/png", name?: string): Promise<string> {
  const target = await askUpload(device, bytes, mime, name);
  const answer = await putBytes(target, base, bytes);
  if (answer.status !== 200) throw new Error(`PUT answered ${answer.status}: ${answer.body.toString()}`);
  return target.mediaId;
}

/** Whether the store holds bytes for `mediaId`: a file under DATA_DIR/media, or an object in the bucket. */
export function bytesProbe(store: { kind: "disk"; dataDir: string } | { kind: "s3"; bucket: TestBucket }) {
  if (store.kind === "disk") {
    return async (mediaId: string) => {
      try {
        return (await stat(path.join(store.dataDir, "media", mediaId.slice(-2), mediaId))).size;
      } catch {
        return null;
      }
    };
  }
  const client = new S3Client({ region: "us-east-1", endpoint: store.bucket.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  return async (mediaId: string) => {
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: store.bucket.bucket, Key: `media/${mediaId}` }));
      return head.ContentLength ?? 0;
    } catch {
      return null;
    }
  };
}

/** A 1×1 PNG: a real image a browser can decode. */
export const PNG_1X1 = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);
export const THUMB = `data:image/png;base64,${PNG_1X1.toString("base64")}`;

/** A 4×2 PNG (red, opaque), so a test can tell the full image from a thumbnail by its size. */
export const PNG_4X2 = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAQAAAACCAIAAADwyuo0AAAAEElEQVR4nGP4z8AARwzIHABvqgf5gNwAKAAAAABJRU5ErkJggg==",
  "base64",
);
