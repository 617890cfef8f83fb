/**
 * The media settings (MEDIA_*, S3_*, AWS_*): part of config.ts's environment schema, read
 * there with everything else. docs/media.md explains them.
 */
import path from "node:path";
import { z } from "zod";

const DAY_MS = 24 * 60 * 60 * 1000;
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

export const mediaEnv = {
  /** Where media bytes live: `disk` (under DATA_DIR/media, one host) or `s3` (any S3-compatible bucket). @default "disk" */
  MEDIA_STORE: z.enum(["disk", "s3"]).default("disk"),
  /** Largest upload, in bytes. @default 67108864 (64 MiB) */
  MEDIA_MAX_BYTES: int(1).default(64 * 1024 * 1024),
  /** How long a `media:url` download URL works. @default 300000 (5 minutes) */
  MEDIA_URL_TTL_MS: int(1000, 7 * DAY_MS).default(5 * 60_000),
  /** How long a `media:upload` URL accepts the bytes. @default 900000 (15 minutes) */
  MEDIA_UPLOAD_TTL_MS: int(1000, 7 * DAY_MS).default(15 * 60_000),
  /**
   * HMAC key (≥ 32 characters) for the URLs Ticks serves itself (the disk store). Unset: a
   * random key made by the first node and kept in the database, which every node shares.
   */
  MEDIA_URL_SECRET: z.string().min(32, "MEDIA_URL_SECRET must be at least 32 characters").optional(),
  /** The bucket, with MEDIA_STORE=s3. */
  S3_BUCKET: z.string().min(3).max(63).optional(),
  /** The bucket's region. @default "us-east-1" */
  S3_REGION: z.string().default("us-east-1"),
  /** The store's URL, for anything but AWS (MinIO, R2…), e.g. `http://minio:9000`. */
  S3_ENDPOINT: z
    .string()
    .url()
    .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), "must be an http:// or https:// URL")
    .optional(),
  /** `true` for stores that need path-style URLs (MinIO, most self-hosted ones). @default false */
  S3_FORCE_PATH_STYLE: z.enum(["true", "false"]).default("false"),
  /** Credentials for the bucket. Unset: the AWS SDK's own chain (instance role, profile…). */
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  AWS_SESSION_TOKEN: z.string().optional(),
};

const mediaEnvSchema = z.object({ ...mediaEnv, DATA_DIR: z.string() });
type MediaEnv = z.infer<typeof mediaEnvSchema>;

export type MediaConfig = {
  store: { kind: "disk"; dir: string } | ({ kind: "s3" } & S3Config);
  maxBytes: number;
  urlTtlMs: number;
  uploadTtlMs: number;
  /** An upload never sent is removed this long after it was asked for. */
  unsentTtlMs: number;
  /** MEDIA_URL_SECRET; null: the key kept in the database. */
  urlSecret: string | null;
};

export type S3Config = {
  bucket: string;
  region: string;
  endpoint: string | null;
  forcePathStyle: boolean;
  /** Null: the AWS SDK's default credential chain. */
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | null;
};

export function mediaConfig(e: MediaEnv, refuse: (variable: string, message: string) => never): MediaConfig {
  const common = {
    maxBytes: e.MEDIA_MAX_BYTES,
    urlTtlMs: e.MEDIA_URL_TTL_MS,
    uploadTtlMs: e.MEDIA_UPLOAD_TTL_MS,
    unsentTtlMs: DAY_MS,
    urlSecret: e.MEDIA_URL_SECRET ?? null,
  };
  const s3Only = (["S3_BUCKET", "S3_ENDPOINT"] as const).find((k) => e[k] !== undefined);
  if (e.MEDIA_STORE === "disk") {
    if (s3Only) refuse(s3Only, "set, but MEDIA_STORE is disk; set MEDIA_STORE=s3 to use a bucket");
    return { ...common, store: { kind: "disk", dir: path.join(e.DATA_DIR, "media") } };
  }
  if (!e.S3_BUCKET) refuse("S3_BUCKET", "required with MEDIA_STORE=s3");
  if ((e.AWS_ACCESS_KEY_ID === undefined) !== (e.AWS_SECRET_ACCESS_KEY === undefined)) {
    refuse("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together");
  }
  return {
    ...common,
    store: {
      kind: "s3",
      bucket: e.S3_BUCKET!,
      region: e.S3_REGION,
      endpoint: e.S3_ENDPOINT ?? null,
      forcePathStyle: e.S3_FORCE_PATH_STYLE === "true",
      credentials: e.AWS_ACCESS_KEY_ID
        ? {
            accessKeyId: e.AWS_ACCESS_KEY_ID,
            secretAccessKey: e.AWS_SECRET_ACCESS_KEY!,
            ...(e.AWS_SESSION_TOKEN ? { sessionToken: e.AWS_SESSION_TOKEN } : {}),
          }
        : null,
    },
  };
}

