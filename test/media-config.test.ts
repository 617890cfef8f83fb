import path from "node:path";
import { expect } from "chai";
import { ConfigError, loadConfig } from "../src/config";

/** The variable a refused configuration names first. */
function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe("media configuration", () => {
  it("defaults to the disk store under DATA_DIR/media, 64 MiB, 5-minute downloads, 15-minute uploads, the key in the database", () => {
    const { media } = loadConfig({ DATA_DIR: "/srv/ticks" });
    expect(media).to.deep.equal({
      store: { kind: "disk", dir: path.join("/srv/ticks", "media") },
      maxBytes: 64 * 1024 * 1024,
      urlTtlMs: 300_000,
      uploadTtlMs: 900_000,
      unsentTtlMs: 24 * 3_600_000,
      urlSecret: null,
    });
  });

  it("reads an S3 store, with or without explicit credentials", () => {
    const env = { MEDIA_STORE: "s3", S3_BUCKET: "media", S3_ENDPOINT: "http://minio:9000", S3_FORCE_PATH_STYLE: "true" };
    expect(loadConfig(env).media.store).to.deep.equal({
      kind: "s3",
      bucket: "media",
      region: "us-east-1",
      endpoint: "http://minio:9000",
      forcePathStyle: true,
      credentials: null,
    });
    const keyed = loadConfig({ ...env, AWS_ACCESS_KEY_ID: "id", AWS_SECRET_ACCESS_KEY: "secret" }).media.store;
    expect(keyed).to.deep.include({ credentials: { accessKeyId: "id", secretAccessKey: "secret" } });
  });

  it("refuses settings that make no sense, naming the variable", () => {
    expect(refusal({ MEDIA_STORE: "s3" })).to.match(/S3_BUCKET: required with MEDIA_STORE=s3/);
    expect(refusal({ S3_BUCKET: "media" })).to.match(/S3_BUCKET: set, but MEDIA_STORE is disk/);
    expect(refusal({ MEDIA_STORE: "s3", S3_BUCKET: "media", AWS_ACCESS_KEY_ID: "id" })).to.match(/AWS_SECRET_ACCESS_KEY/);
    expect(refusal({ MEDIA_STORE: "ftp" })).to.match(/MEDIA_STORE/);
    expect(refusal({ MEDIA_URL_SECRET: "short" })).to.match(/MEDIA_URL_SECRET must be at least 32 characters/);
    for (const v of ["0", "-5", "1.5", "lots"]) expect(refusal({ MEDIA_MAX_BYTES: v })).to.match(/MEDIA_MAX_BYTES/);
    expect(refusal({ MEDIA_URL_TTL_MS: "10" })).to.match(/MEDIA_URL_TTL_MS/);
    expect(refusal({ MEDIA_STORE: "s3", S3_BUCKET: "media", S3_ENDPOINT: "minio:9000" })).to.match(/S3_ENDPOINT/);
  });
});
