/**
 * Media: where the bytes live (MediaStore: on disk or in an S3 bucket) and what the
 * database knows about each upload (MediaCatalog). docs/media.md tells the whole flow.
 */

/** One upload as the database keeps it. */
export type MediaRecord = {
  mediaId: string;
  ownerId: string;
  /** `type/subtype`, lower case. */
  mime: string;
  size: number;
  name: string | null;
  createdAt: Date;
  /** When the bytes were found whole; null until then. */
  storedAt: Date | null;
  /** When a message first carried it; null while unsent. */
  sentAt: Date | null;
};

/** A URL works from `from` (now, by the app's clock) until `until`. */
export type Validity = { from: Date; until: Date };

/** Where a client sends the bytes: `url` absolute, or a path on the server it is connected to. */
export type UploadTarget = { url: string; headers: Record<string, string> };

/**
 * Where the bytes live. The store hands out URLs; the bytes never pass through the
 * messaging core. test/contracts/mediaStore.test.ts runs one suite against both stores.
 */
export interface MediaStore {
  readonly kind: "disk" | "s3";
  /** A URL that accepts exactly `size` bytes by PUT while `validity` lasts. */
  uploadTarget(media: Pick<MediaRecord, "mediaId" | "mime" | "size">, validity: Validity): Promise<UploadTarget>;
  /** A GET URL that needs no other credentials while `validity` lasts; answers Range requests. */
  downloadUrl(media: Pick<MediaRecord, "mediaId" | "mime" | "name">, validity: Validity): Promise<string>;
  /** Size of the bytes stored under this id, or null when there are none. */
  storedSize(mediaId: string): Promise<number | null>;
  /** Removes the bytes of these ids; ids with no bytes are fine. */
  remove(mediaIds: string[]): Promise<void>;
  /**
   * Removes what uploads cut short by a crash left behind, if the store keeps any (the disk
   * store's partial files), last written before `before`; returns how many. (An S3 PUT is
   * all or nothing: it leaves nothing.)
   */
  removeLeftovers?(before: Date): Promise<number>;
}

/** What the database knows about uploads. Every method throws StorageUnavailableError when the database fails. */
export interface MediaCatalog {
  create(media: Pick<MediaRecord, "mediaId" | "ownerId" | "mime" | "size" | "name" | "createdAt">): Promise<void>;
  get(mediaId: string): Promise<MediaRecord | null>;
  /**
   * The upload if `userId` may use it: their own upload, or media carried by a message they
   * can see (a member of its conversation; not expired, not deleted for everyone). Else null:
   * unknown and invisible look the same, so nobody learns that someone else's media exists.
   */
  visibleTo(mediaId: string, userId: string, now: Date): Promise<MediaRecord | null>;
  /** The bytes arrived whole. False when the row is gone or was already sent (no replacing it then). */
  markStored(mediaId: string, at: Date): Promise<boolean>;
  /**
   * Moves to the trash (up to `limit`) the uploads no retained message refers to: sent
   * ones whose last message went, and unsent ones created before `unsentBefore`. Returns
   * how many moved.
   */
  trashUnreferenced(unsentBefore: Date, limit: number): Promise<number>;
  /** Up to `limit` trashed ids whose bytes are still to be removed. */
  trashed(limit: number): Promise<string[]>;
  /** The bytes of these trashed ids are gone: forget them. */
  forget(mediaIds: string[]): Promise<void>;
}
