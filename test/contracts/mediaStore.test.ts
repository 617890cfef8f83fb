import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { v7 as uuidv7 } from "uuid";
import { systemClock } from "../../src/clock";
import { createLogger } from "../../src/log";
import { mediaRoutes } from "../../src/http/mediaRoutes";
import { DiskMediaStore } from "../../src/media/DiskMediaStore";
import type { MediaStore } from "../../src/media/ports";
import { S3MediaStore } from "../../src/media/S3MediaStore";
import { UrlSigner } from "../../src/media/UrlSigner";
import { createDatabase, migrateToLatest, type Database } from "../../src/storage/database";
import { SqlMediaCatalog } from "../../src/storage/SqlMediaCatalog";
import { createTestDatabase, type TestDatabase } from "../helpers/database";
import { absolute, http } from "../helpers/media";
import { S3RVER_CREDENTIALS, startS3rver, type TestBucket } from "../helpers/s3rver";
import { sleep } from "../helpers/wait";

/** A store as the contract sees it: the store, and where its path URLs resolve. */
type Harness = { store: MediaStore; base: string };

/**
 * What both MediaStores promise (src/media/ports.ts), one suite run against each: the disk
 * store behind its HTTP routes (real server, real catalog in PostgreSQL), the S3 store
 * against s3rver. Upload URLs take the bytes, download URLs give them back with the type,
 * the disposition and Range; both stop working when their validity ends.
 */
function mediaStoreContract(name: string, setUp: (catalog: SqlMediaCatalog) => Promise<Harness & { close(): Promise<void> }>) {
  describe(`MediaStore contract: ${name}`, function () {
    this.timeout(30_000);
    let testDb: TestDatabase;
    let db: Database;
    let catalog: SqlMediaCatalog;
    let h: Harness & { close(): Promise<void> };
    const validFor = (ms: number) => ({ from: new Date(), until: new Date(Date.now() + ms) });

    /** A catalog row (the disk routes read it) and the store's upload URL for it. */
    async function newUpload(bytes: Buffer, mime = "image/png", validity = validFor(60_000)) {
      const media = { mediaId: uuidv7(), ownerId: "contract", mime, size: bytes.length, name: "f.png", createdAt: new Date() };
      await catalog.create(media);
      return { media, target: await h.store.uploadTarget(media, validity) };
    }
    const putTo = (target: { url: string; headers: Record<string, string> }, body: Buffer) =>
      http("PUT", absolute(target.url, h.base), { headers: target.headers, body });

    before(async () => {
      testDb = await createTestDatabase();
      db = createDatabase({ kind: "postgres", url: testDb.url });
      await migrateToLatest(db, "postgres");
      catalog = new SqlMediaCatalog(db);
      h = await setUp(catalog);
    });
    after(async () => {
      await h?.close();
      await db?.destroy();
      await testDb?.drop();
    });

    it("an upload URL takes the bytes; a download URL gives them back, whole or by Range", async () => {
      const bytes = Buffer.from("0123456789abcdef");
      const { media, target } = await newUpload(bytes, "audio/ogg");
      expect(await h.store.storedSize(media.mediaId)).to.equal(null);
      expect((await putTo(target, bytes)).status).to.equal(200);
      expect(await h.store.storedSize(media.mediaId)).to.equal(bytes.length);
      const url = absolute(await h.store.downloadUrl(media, validFor(60_000)), h.base);
      const whole = await http("GET", url);
      expect(whole.status).to.equal(200);
      expect(whole.body.equals(bytes)).to.equal(true);
      expect(whole.headers["content-type"]).to.equal("audio/ogg");
      expect(String(whole.headers["content-disposition"])).to.match(/^inline/);
      const part = await http("GET", url, { headers: { range: "bytes=4-7" } });
      expect(part.status).to.equal(206);
      expect(part.body.toString()).to.equal("4567");
    });

    it("remove takes the bytes away; removing what is not there is fine", async () => {
      const bytes = Buffer.from("gone soon");
      const { media, target } = await newUpload(bytes);
      await putTo(target, bytes);
      await h.store.remove([media.mediaId, uuidv7()]);
      expect(await h.store.storedSize(media.mediaId)).to.equal(null);
      await h.store.remove([media.mediaId]);
    });

    it("refuses an upload URL and a download URL past their validity (403), keeping nothing", async () => {
      const bytes = Buffer.from("too late");
      // The shortest validity a presigned URL has is a second.
      const { media, target } = await newUpload(bytes, "image/png", validFor(1000));
      const download = absolute(await h.store.downloadUrl(media, validFor(1000)), h.base);
      await sleep(2100);
      expect((await putTo(target, bytes)).status).to.equal(403);
      expect(await h.store.storedSize(media.mediaId)).to.equal(null);
      expect((await http("GET", download)).status).to.equal(403);
    });
  });
}

mediaStoreContract("disk, served by its HTTP routes", async (catalog) => {
  const dir = await mkdtemp(path.join(tmpdir(), "ticks-media-contract-"));
  const signer = new UrlSigner(Buffer.from("contract-test-key-contract-test-key"));
  const store = new DiskMediaStore(dir, signer);
  const route = mediaRoutes({ store, catalog, signer, clock: systemClock, log: createLogger("silent"), track: () => {} });
  const server: Server = createServer((req, res) => {
    if (!route(req, res, (req.url ?? "/").split("?")[0]!)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    store,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
});

mediaStoreContract("s3, against s3rver", async () => {
  const bucket: TestBucket = await startS3rver();
  const store = new S3MediaStore({
    bucket: bucket.bucket,
    region: "us-east-1",
    endpoint: bucket.endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
  return {
    store,
    base: bucket.endpoint,
    close: async () => {
      store.close();
      await bucket.close();
    },
  };
});

describe("DiskMediaStore: what an upload cut short by a crash leaves", () => {
  it("removeLeftovers removes partial files last written before the cut-off, and only those", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "ticks-media-partial-"));
    try {
      const store = new DiskMediaStore(dir, new UrlSigner(Buffer.from("contract-test-key-contract-test-key")));
      await mkdir(path.join(dir, ".partial"));
      const old = path.join(dir, ".partial", `${uuidv7()}.aaaaaa`);
      const fresh = path.join(dir, ".partial", `${uuidv7()}.bbbbbb`);
      await writeFile(old, "half an upload");
      await writeFile(fresh, "an upload in progress");
      const twoDaysAgo = new Date(Date.now() - 48 * 3_600_000);
      await utimes(old, twoDaysAgo, twoDaysAgo);
      expect(await store.removeLeftovers(new Date(Date.now() - 24 * 3_600_000))).to.equal(1);
      expect(existsSync(old)).to.equal(false);
      expect(existsSync(fresh)).to.equal(true);
      // No .partial folder at all (nothing was ever uploaded): nothing to do.
      expect(await new DiskMediaStore(path.join(dir, "none"), new UrlSigner(Buffer.alloc(32))).removeLeftovers(new Date())).to.equal(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
