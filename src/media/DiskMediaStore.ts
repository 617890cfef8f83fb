import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { randomBytes } from "node:crypto";
import { UUID } from "../protocol/ids";
import type { MediaRecord, MediaStore, UploadTarget, Validity } from "./ports";
import type { UrlSigner } from "./UrlSigner";

/** Where an upload stands after `write`. */
export type WriteOutcome = "stored" | "too_long" | "too_short";

/** The body sent more bytes than announced: the copy stops right there. */
class TooLong extends Error {}

/**
 * Media as files under one folder (DATA_DIR/media by default): `<last two hex digits of
 * the id>/<id>`, and uploads in progress under `.partial/`, renamed into place only once
 * whole and synced to disk. Ticks serves both directions itself (http/mediaRoutes.ts), at
 * `/media/<id>` with a signed query (UrlSigner). Every node of a cluster must see the same
 * folder (one host, or a shared file system).
 */
export class DiskMediaStore implements MediaStore {
  readonly kind = "disk";

  constructor(
    private readonly dir: string,
    private readonly signer: UrlSigner,
  ) {}

  async uploadTarget(media: Pick<MediaRecord, "mediaId" | "mime" | "size">, validity: Validity): Promise<UploadTarget> {
    return {
      url: `/media/${media.mediaId}?${this.signer.sign("put", media.mediaId, validity.until)}`,
      headers: { "content-type": media.mime },
    };
  }

  async downloadUrl(media: Pick<MediaRecord, "mediaId">, validity: Validity): Promise<string> {
    return `/media/${media.mediaId}?${this.signer.sign("get", media.mediaId, validity.until)}`;
  }

  async storedSize(mediaId: string): Promise<number | null> {
    try {
      return (await stat(this.fileOf(mediaId))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async remove(mediaIds: string[]): Promise<void> {
    for (const id of mediaIds) await rm(this.fileOf(id), { force: true });
  }

  async removeLeftovers(before: Date): Promise<number> {
    const partialDir = path.join(this.dir, ".partial");
    const names = await readdir(partialDir).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? [] : Promise.reject(err)));
    let removed = 0;
    for (const name of names) {
      const file = path.join(partialDir, name);
      const info = await stat(file).catch(() => null);
      if (info && info.mtime < before) {
        await rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  /**
   * Streams `body` to a partial file, counting: one byte over `size` stops the copy. Only
   * exactly `size` bytes, synced to disk, replace what the id had; anything else leaves no trace.
   */
  async write(mediaId: string, size: number, body: Readable): Promise<WriteOutcome> {
    const file = this.fileOf(mediaId);
    const partialDir = path.join(this.dir, ".partial");
    await mkdir(partialDir, { recursive: true });
    const partial = path.join(partialDir, `${mediaId}.${randomBytes(6).toString("hex")}`);
    let count = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        count += chunk.length;
        if (count > size) done(new TooLong());
        else done(null, chunk);
      },
    });
    let kept = false;
    try {
      // `flush`: the data is on disk (fsync) before the stream closes, and so before the 2xx.
      await pipeline(body, counter, createWriteStream(partial, { flags: "wx", flush: true }));
      if (count < size) return "too_short";
      await mkdir(path.dirname(file), { recursive: true });
      await rename(partial, file);
      kept = true;
      await syncDir(path.dirname(file));
      return "stored";
    } catch (err) {
      if (err instanceof TooLong) return "too_long";
      throw err;
    } finally {
      if (!kept) await rm(partial, { force: true });
    }
  }

  /** The stored file's size and a way to stream a byte range of it; null when there is none. */
  async open(mediaId: string): Promise<{ size: number; stream(start: number, end: number): Readable } | null> {
    const size = await this.storedSize(mediaId);
    if (size === null) return null;
    const file = this.fileOf(mediaId);
    return { size, stream: (start, end) => createReadStream(file, { start, end }) };
  }

  /** Ids are UUIDs, checked again here: nothing path-like ever reaches the file system. */
  private fileOf(mediaId: string): string {
    if (!UUID.test(mediaId)) throw new Error(`not a media id: ${JSON.stringify(mediaId).slice(0, 80)}`);
    const id = mediaId.toLowerCase();
    return path.join(this.dir, id.slice(-2), id);
  }
}

/** The rename is durable only once the folder's entry is on disk too. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
