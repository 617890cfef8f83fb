import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import S3rver from "s3rver";

/** s3rver's built-in account. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export type TestBucket = { endpoint: string; bucket: string; env: Record<string, string>; close(): Promise<void> };

/**
 * An S3-compatible server (s3rver) of the test's own, on a random port, with one bucket,
 * files in a temp folder removed by close(). `env` is what a Ticks server needs to use it.
 * s3rver checks a presigned URL's expiry but not its SigV4 signature (docs/media.md).
 */
export async function startS3rver(bucket = "ticks-media"): Promise<TestBucket> {
  const directory = await mkdtemp(path.join(tmpdir(), "ticks-s3rver-"));
  const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    env: {
      MEDIA_STORE: "s3",
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    },
    close: async () => {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
