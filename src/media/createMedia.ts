import type { Knex } from "knex";
import type { MediaConfig } from "../mediaConfig";
import { mediaUrlKey, SqlMediaCatalog } from "../storage/SqlMediaCatalog";
import { DiskMediaStore } from "./DiskMediaStore";
import type { MediaCatalog, MediaStore } from "./ports";
import { UrlSigner } from "./UrlSigner";

/** The media store MEDIA_STORE names, the catalog and the URL key: what createApp needs for media. */
export async function createMediaParts(
  config: MediaConfig,
  db: Knex,
): Promise<{ store: MediaStore; catalog: MediaCatalog; signer: UrlSigner; close(): void }> {
  const signer = new UrlSigner(await mediaUrlKey(db, config.urlSecret));
  const catalog = new SqlMediaCatalog(db);
  if (config.store.kind === "disk") {
    return { store: new DiskMediaStore(config.store.dir, signer), catalog, signer, close: () => {} };
  }
  // Loaded only when used: the AWS SDK is large, and a disk deployment never needs it.
  // (require, as MigrationSource does: it resolves .js compiled and .ts under tsx alike.)
  const { S3MediaStore } = require("./S3MediaStore") as typeof import("./S3MediaStore");
  const store = new S3MediaStore(config.store);
  return { store, catalog, signer, close: () => store.close() };
}
