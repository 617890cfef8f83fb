import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { S3Config } from "../mediaConfig";
import { contentDisposition } from "./disposition";
import type { MediaRecord, MediaStore, UploadTarget, Validity } from "./ports";

/** S3 takes at most 1000 keys per DeleteObjects. */
const DELETE_BATCH = 1000;

/**
 * Media in an S3-compatible bucket (AWS, MinIO, R2…): clients PUT and GET the bucket
 * directly with presigned URLs, so no byte passes through Ticks. The upload URL signs the
 * Content-Length and Content-Type, so the store refuses a body of another size; Ticks still
 * checks the stored size before a message may carry it (MediaService.attach). Download URLs
 * carry the type, the disposition and `Cache-Control: private` as response overrides; the
 * headers Ticks adds when it serves bytes itself (nosniff, CSP) are the operator's to set at
 * the bucket or CDN (docs/media.md).
 */
export class S3MediaStore implements MediaStore {
  readonly kind = "s3";
  private readonly client: S3Client;

  constructor(private readonly config: S3Config) {
    this.client = new S3Client({
      region: config.region,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      forcePathStyle: config.forcePathStyle,
      ...(config.credentials ? { credentials: config.credentials } : {}),
      // Otherwise the SDK puts a checksum of the (empty) body it signs into a presigned PUT URL.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  async uploadTarget(media: Pick<MediaRecord, "mediaId" | "mime" | "size">, validity: Validity): Promise<UploadTarget> {
    const command = new PutObjectCommand({
      Bucket: this.config.bucket,
      Key: keyOf(media.mediaId),
      ContentLength: media.size,
      ContentType: media.mime,
    });
    const url = await getSignedUrl(this.client, command, {
      expiresIn: secondsOf(validity),
      signableHeaders: new Set(["content-length", "content-type"]),
    });
    return { url, headers: { "content-type": media.mime } };
  }

  downloadUrl(media: Pick<MediaRecord, "mediaId" | "mime" | "name">, validity: Validity): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.config.bucket,
      Key: keyOf(media.mediaId),
      ResponseContentType: media.mime,
      ResponseContentDisposition: contentDisposition(media.mime, media.name),
      ResponseCacheControl: "private",
    });
    return getSignedUrl(this.client, command, { expiresIn: secondsOf(validity) });
  }

  async storedSize(mediaId: string): Promise<number | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: keyOf(mediaId) }));
      return head.ContentLength ?? 0;
    } catch (err) {
      if (err instanceof S3ServiceException && (err.$metadata.httpStatusCode === 404 || err.name === "NotFound")) return null;
      throw err;
    }
  }

  async remove(mediaIds: string[]): Promise<void> {
    for (let i = 0; i < mediaIds.length; i += DELETE_BATCH) {
      const batch = mediaIds.slice(i, i + DELETE_BATCH);
      const result = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.config.bucket,
          Delete: { Objects: batch.map((id) => ({ Key: keyOf(id) })), Quiet: true },
        }),
      );
      const failed = result.Errors?.filter((e) => e.Code !== "NoSuchKey") ?? [];
      if (failed.length > 0) throw new Error(`S3 refused to delete ${failed.length} object(s): ${failed[0]!.Code} ${failed[0]!.Message}`);
    }
  }

  close(): void {
    this.client.destroy();
  }
}

const keyOf = (mediaId: string) => `media/${mediaId.toLowerCase()}`;

/** Presigned URLs last whole seconds, counted by the store from when they were signed: at least one. */
const secondsOf = (v: Validity) => Math.max(1, Math.ceil((v.until.getTime() - v.from.getTime()) / 1000));
