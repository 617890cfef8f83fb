import { v7 as uuidv7 } from "uuid";
import type { Clock } from "../clock";
import type { Logger } from "../log";
import { AppError, type MediaAttachment, type MediaInfo, type MediaUploadResult, type MediaUrlResult } from "../protocol";
import type { MediaCatalog, MediaRecord, MediaStore } from "./ports";

export type MediaOptions = {
  /** MEDIA_MAX_BYTES. */
  maxBytes: number;
  /** MEDIA_UPLOAD_TTL_MS: how long an upload URL takes the bytes. */
  uploadTtlMs: number;
  /** MEDIA_URL_TTL_MS: how long a download URL works. */
  urlTtlMs: number;
  /** An upload never sent is removed this long after it was asked for (24 hours). */
  unsentTtlMs: number;
};

export type UploadCommand = { mime: string; size: number; name?: string };

/** Looks the same for unknown ids and for media the caller may not see: nothing leaks. */
const notFound = () => new AppError("NOT_FOUND", "no such media");

/**
 * Uploads, download URLs, the media a message carries, and removing bytes nobody refers
 * to. The bytes themselves go straight between the client and the store (the disk store's
 * HTTP routes, or the bucket): nothing here holds them.
 */
export class MediaService {
  constructor(
    private readonly store: MediaStore,
    private readonly catalog: MediaCatalog,
    private readonly clock: Clock,
    private readonly options: MediaOptions,
    private readonly log: Logger,
  ) {}

  /** `media:upload`: records the upload, answers where to PUT it. */
  async requestUpload(userId: string, cmd: UploadCommand): Promise<MediaUploadResult> {
    if (cmd.size > this.options.maxBytes) throw new AppError("TOO_LARGE", `media is at most ${this.options.maxBytes} bytes`);
    const now = this.clock.now();
    const until = new Date(now.getTime() + this.options.uploadTtlMs);
    const media = { mediaId: uuidv7(), ownerId: userId, mime: cmd.mime, size: cmd.size, name: cmd.name ?? null, createdAt: now };
    await this.catalog.create(media);
    const target = await this.store.uploadTarget(media, { from: now, until });
    return { mediaId: media.mediaId, url: target.url, method: "PUT", headers: target.headers, expiresAt: until.toISOString() };
  }

  /** `media:url`: for the uploader and whoever can see a message carrying it; anyone else NOT_FOUND. */
  async downloadUrl(userId: string, mediaId: string): Promise<MediaUrlResult> {
    const now = this.clock.now();
    const media = await this.catalog.visibleTo(mediaId, userId, now);
    if (!media) throw notFound();
    const until = new Date(now.getTime() + this.options.urlTtlMs);
    return { url: await this.store.downloadUrl(media, { from: now, until }), expiresAt: until.toISOString() };
  }

  /**
   * The `media` of a message `userId` sends: their own upload whose bytes arrived whole (and
   * are not past the unsent limit), or media they can see in another message (forwarding:
   * the same bytes, no copy). Anything else is BAD_REQUEST, with one message for all cases.
   */
  async attach(userId: string, attachment: MediaAttachment): Promise<MediaInfo> {
    const now = this.clock.now();
    const media = await this.catalog.visibleTo(attachment.mediaId, userId, now);
    const unusable = () => new AppError("BAD_REQUEST", "media: no upload of yours with these bytes, and no message you can see carries it");
    if (!media) throw unusable();
    if (media.sentAt === null && now.getTime() - media.createdAt.getTime() >= this.options.unsentTtlMs) throw unusable();
    if (media.storedAt === null && !(await this.bytesArrived(media))) throw unusable();
    return {
      mediaId: media.mediaId,
      mime: media.mime,
      size: media.size,
      name: media.name,
      width: attachment.width ?? null,
      height: attachment.height ?? null,
      durationMs: attachment.durationMs ?? null,
      thumbnail: attachment.thumbnail ?? null,
    };
  }

  /**
   * For a store the client uploads to directly (S3): are the bytes there, of the announced
   * size? A wrong size is removed at once: nothing of another size is kept.
   */
  private async bytesArrived(media: MediaRecord): Promise<boolean> {
    const size = await this.store.storedSize(media.mediaId);
    if (size === null) return false;
    if (size !== media.size) {
      this.log.info({ mediaId: media.mediaId, announced: media.size, stored: size }, "upload of the wrong size removed");
      await this.store.remove([media.mediaId]);
      return false;
    }
    await this.catalog.markStored(media.mediaId, this.clock.now());
    return true;
  }

  /**
   * Removes the bytes no retained message refers to (its messages were deleted for everyone
   * or expired), and uploads never sent within the unsent limit. Rows go to the trash first,
   * then the bytes, then the trash rows: see MediaCatalog.trashUnreferenced. Also removes
   * what uploads cut short by a crash left in the store. Returns how many were removed.
   */
  async sweep(batchSize = 1000, maxBatches = 100): Promise<number> {
    const unsentBefore = new Date(this.clock.now().getTime() - this.options.unsentTtlMs);
    for (let i = 0; i < maxBatches; i++) {
      if ((await this.catalog.trashUnreferenced(unsentBefore, batchSize)) < batchSize) break;
    }
    // Partial files of uploads a crash cut short: nothing still in progress is a day old.
    let removed = (await this.store.removeLeftovers?.(unsentBefore)) ?? 0;
    for (let i = 0; i < maxBatches; i++) {
      const ids = await this.catalog.trashed(batchSize);
      if (ids.length === 0) break;
      await this.store.remove(ids);
      await this.catalog.forget(ids);
      removed += ids.length;
      if (ids.length < batchSize) break;
    }
    return removed;
  }
}
