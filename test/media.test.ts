import { mkdtemp, readdir, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Client } from "pg";
import type { RunningTicks } from "../src/main";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { absolute, askUpload, bytesProbe, http, putBytes, THUMB, upload } from "./helpers/media";
import { expectError, expectOk, okReply } from "./helpers/replies";
import { startS3rver, type TestBucket } from "./helpers/s3rver";
import { ManualClock, startServer, urlOf } from "./helpers/server";

const DAY_MS = 24 * 3_600_000;

/**
 * Media end to end, on both stores: two nodes on one database (and one DATA_DIR or one
 * bucket), real sockets, real HTTP. Each store gets its own database, servers and clock;
 * the lifetime cases move the clock by days, so they come last.
 */
for (const kind of ["disk", "s3"] as const) {
  describe(`media (${kind} store)`, function () {
    this.timeout(60_000);
    let db: TestDatabase;
    let dataDir: string;
    let bucket: TestBucket | undefined;
    let a: RunningTicks;
    let b: RunningTicks;
    let pg: Client;
    const clock = new ManualClock();
    const devices: Device[] = [];
    let stored: (mediaId: string) => Promise<number | null>;

    const connect = async (user: string, server = a) => {
      const d = new Device(urlOf(server), { userId: user });
      devices.push(d);
      return d.connectSynced();
    };
    const count = async (table: string) => Number((await pg.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);
    const sendMedia = (d: Device, to: string, media: Record<string, unknown>, content = "") =>
      d.request("message:send", { clientMsgId: uniqueId("c"), to, content, media: media as never });

    before(async () => {
      db = await createTestDatabase();
      dataDir = await mkdtemp(path.join(tmpdir(), "ticks-media-"));
      bucket = kind === "s3" ? await startS3rver() : undefined;
      const env = { DATA_DIR: dataDir, MEDIA_MAX_BYTES: "1000000", ...(bucket?.env ?? {}) };
      a = await startServer(db.url, env, clock);
      b = await startServer(db.url, env, clock);
      pg = new Client({ connectionString: db.url });
      await pg.connect();
      stored = bytesProbe(kind === "disk" ? { kind, dataDir } : { kind, bucket: bucket! });
    });
    afterEach(() => devices.splice(0).forEach((d) => d.close()));
    after(async () => {
      await pg?.end();
      await a?.stop();
      await b?.stop();
      await bucket?.close();
      await db?.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    it("uploads through a URL one node made to the other node, sends, and every place the message appears carries media", async () => {
      const [alice, bob] = [uniqueId("alice"), uniqueId("bob")];
      const aliceDevice = await connect(alice, a);
      const bytes = Buffer.from("a photo's bytes, more or less ".repeat(100));
      const target = await askUpload(aliceDevice, bytes, "image/png", "beach.png");
      expect(target.method).to.equal("PUT");
      expect(new Date(target.expiresAt).getTime()).to.be.greaterThan(clock.now().getTime());
      // Asked on node a, put to node b (for a bucket: to the bucket, whichever node signed it).
      const put = await putBytes(target, urlOf(b), bytes);
      expect(put.status, put.body.toString()).to.equal(200);
      expect(await stored(target.mediaId)).to.equal(bytes.length);

      const reply = await sendMedia(aliceDevice, bob, { mediaId: target.mediaId, width: 640, height: 480, thumbnail: THUMB }, "at the beach");
      expectOk(reply);
      const media = { mediaId: target.mediaId, mime: "image/png", size: bytes.length, name: "beach.png", width: 640, height: 480, durationMs: null, thumbnail: THUMB };
      expect(reply.message.media).to.deep.equal(media);
      expect(reply.message.content).to.equal("at the beach");

      // Backlog (bob was offline), on the other node.
      const bobDevice = await connect(bob, b);
      const got = bobDevice.received.find((m) => m.id === reply.message.id);
      expect(got?.media).to.deep.equal(media);
      // Live (to a device on alice's node: these two nodes share no Redis).
      const bobLive = await connect(bob, a);
      const again = okReply(await sendMedia(aliceDevice, bob, { mediaId: target.mediaId }));
      await waitFor(() => bobLive.live.some((m) => m.id === again.message.id), "live media message");
      expect(bobLive.live.find((m) => m.id === again.message.id)!.media).to.include({ mediaId: target.mediaId, thumbnail: null });
      // History and the conversation list.
      const history = okReply(await bobDevice.request("message:history", { conversationId: reply.message.conversationId }));
      expect(history.messages.map((m) => m.media?.mediaId)).to.deep.equal([target.mediaId, target.mediaId]);
      const list = okReply(await bobDevice.request("conversation:list", {}));
      expect(list.conversations.find((c) => c.id === reply.message.conversationId)!.lastMessage!.media!.mediaId).to.equal(target.mediaId);

      // Bob downloads it, with no credentials but the URL, from either node.
      for (const server of [a, b]) {
        const link = okReply(await bobDevice.request("media:url", { mediaId: target.mediaId }));
        const got = await http("GET", absolute(link.url, urlOf(server)));
        expect(got.status).to.equal(200);
        expect(got.body.equals(bytes)).to.equal(true);
        expect(got.headers["content-type"]).to.equal("image/png");
      }
    });

    it("answers Range requests with 206 and the bytes asked for", async () => {
      const alice = await connect(uniqueId("alice"));
      const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
      const mediaId = await upload(alice, urlOf(a), bytes, "audio/ogg");
      const link = okReply(await alice.request("media:url", { mediaId }));
      const url = absolute(link.url, urlOf(b));
      const part = await http("GET", url, { headers: { range: "bytes=100-199" } });
      expect(part.status).to.equal(206);
      expect(part.headers["content-range"]).to.equal("bytes 100-199/1000");
      expect(part.body.equals(bytes.subarray(100, 200))).to.equal(true);
      if (kind === "disk") {
        // (s3rver answers neither suffix ranges nor 416; S3 itself does both.)
        const tail = await http("GET", url, { headers: { range: "bytes=-10" } });
        expect(tail.status).to.equal(206);
        expect(tail.body.equals(bytes.subarray(990))).to.equal(true);
        expect((await http("GET", url, { headers: { range: "bytes=5000-" } })).status).to.equal(416);
      }
    });

    it("serves images, audio and video inline and anything else, SVG included, as an attachment", async () => {
      const alice = await connect(uniqueId("alice"));
      const cases: [string, string][] = [
        ["image/jpeg", "inline"],
        ["audio/mpeg", "inline"],
        ["video/mp4", "inline"],
        ["image/svg+xml", "attachment"],
        ["text/html", "attachment"],
        ["application/pdf", "attachment"],
      ];
      for (const [mime, disposition] of cases) {
        const mediaId = await upload(alice, urlOf(a), Buffer.from("<svg onload=alert(1)>"), mime, "file name \"x\".bin");
        const got = await http("GET", absolute(okReply(await alice.request("media:url", { mediaId })).url, urlOf(a)));
        expect(got.status).to.equal(200);
        expect(got.headers["content-type"], mime).to.equal(mime);
        expect(String(got.headers["content-disposition"]).split(";")[0], mime).to.equal(disposition);
        expect(String(got.headers["cache-control"])).to.match(/private/);
        if (kind === "disk") {
          expect(got.headers["x-content-type-options"]).to.equal("nosniff");
          expect(got.headers["content-security-policy"]).to.equal("default-src 'none'");
        }
      }
    });

    it("in a group: every member can fetch and forward it, nobody else; a removed member keeps only what came before", async () => {
      const [alice, bob, carol] = await Promise.all([connect(uniqueId("alice")), connect(uniqueId("bob")), connect(uniqueId("carol"))]);
      const group = okReply(await alice.request("group:create", { title: "trip", members: [bob.userId] }));
      const mediaId = await upload(alice, urlOf(a), Buffer.from("group photo"), "image/jpeg");
      expectOk(await alice.request("message:send", { clientMsgId: uniqueId("g"), conversationId: group.conversationId, content: "", media: { mediaId } }));
      expectOk(await bob.request("media:url", { mediaId }));
      expectError(await carol.request("media:url", { mediaId }), "NOT_FOUND");
      expectError(await sendMedia(carol, bob.userId, { mediaId }), "BAD_REQUEST");
      expectOk(await sendMedia(bob, carol.userId, { mediaId }));
      // Carol now sees it through bob's forward.
      expectOk(await carol.request("media:url", { mediaId }));
      // Removed from the group, bob keeps what was before, and sees nothing sent after.
      expectOk(await alice.request("group:remove", { clientMsgId: uniqueId("r"), conversationId: group.conversationId, userId: bob.userId }));
      const later = await upload(alice, urlOf(a), Buffer.from("after bob left"), "image/jpeg");
      expectOk(await alice.request("message:send", { clientMsgId: uniqueId("g"), conversationId: group.conversationId, content: "", media: { mediaId: later } }));
      expectOk(await bob.request("media:url", { mediaId }));
      expectError(await bob.request("media:url", { mediaId: later }), "NOT_FOUND");
    });

    if (kind === "disk") {
      it("a node shutting down finishes an upload in progress (and records it) before it closes", async () => {
        const node = await startServer(db.url, { DATA_DIR: dataDir }, clock);
        const alice = await connect(uniqueId("alice"), node);
        const bytes = Buffer.alloc(200_000, 3);
        const target = await askUpload(alice, bytes, "video/mp4");
        const url = new URL(absolute(target.url, urlOf(node)));
        const answer = new Promise<number>((resolve, reject) => {
          const req = request(url, { method: "PUT", headers: { ...target.headers, "content-length": bytes.length } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          });
          req.on("error", reject);
          req.write(bytes.subarray(0, 100_000));
          // Half the body is in; the node is told to stop; then the rest arrives.
          setTimeout(() => {
            const stopped = node.stop();
            // Long after a close with nothing else in flight would have closed the database.
            setTimeout(() => req.end(bytes.subarray(100_000)), 1500);
            void stopped;
          }, 200);
        });
        expect(await answer).to.equal(200);
        expect(await stored(target.mediaId)).to.equal(bytes.length);
        const row = await pg.query("SELECT stored_at FROM media WHERE media_id = $1", [target.mediaId]);
        expect(row.rows[0].stored_at).to.not.equal(null);
      });
    }

    describe("bad input: refused, and nothing is stored", () => {
      it("refuses a size over MEDIA_MAX_BYTES (TOO_LARGE), zero, negative or not a whole number", async () => {
        const alice = await connect(uniqueId("alice"));
        const before = await count("media");
        expectError(await alice.request("media:upload", { mime: "image/png", size: 1_000_001 }), "TOO_LARGE");
        for (const size of [0, -1, 1.5, "10" as never, Number.NaN]) {
          expectError(await alice.request("media:upload", { mime: "image/png", size }), "BAD_REQUEST");
        }
        expect(await count("media")).to.equal(before);
      });

      it("refuses a malformed mime or name", async () => {
        const alice = await connect(uniqueId("alice"));
        const before = await count("media");
        for (const mime of ["image", "image/", "/png", "image/png; charset=utf-8", "a/b/c", "ima ge/png", `image/${"x".repeat(130)}`, "", 7 as never]) {
          expectError(await alice.request("media:upload", { mime, size: 10 }), "BAD_REQUEST", JSON.stringify(mime));
        }
        expectError(await alice.request("media:upload", { mime: "image/png", size: 10, name: "x".repeat(256) }), "BAD_REQUEST");
        expectError(await alice.request("media:upload", { mime: "image/png", size: 10, name: "a\u0000b" }), "BAD_REQUEST");
        expect(await count("media")).to.equal(before);
      });

      it("keeps nothing of a body shorter or longer than announced, and no message can carry it", async () => {
        const alice = await connect(uniqueId("alice"));
        const bob = uniqueId("bob");
        const bytes = Buffer.alloc(100, 7);
        const messagesBefore = await count("messages");
        for (const body of [bytes.subarray(0, 99), Buffer.alloc(101, 7)]) {
          const target = await askUpload(alice, bytes, "image/png");
          if (kind === "disk") {
            // With a matching Content-Length the count catches it while streaming; with a
            // wrong one it is refused before a byte is read.
            const streamed = await putBytes(target, urlOf(b), body, { chunked: true });
            expect(streamed.status).to.be.oneOf([400, 413]);
            expect((await putBytes(target, urlOf(b), body)).status).to.equal(400);
            expect(await readdir(path.join(dataDir, "media", ".partial"))).to.deep.equal([]);
          } else {
            // s3rver does not check the signed Content-Length (AWS and MinIO do, with a 403):
            // Ticks checks the stored size before any message may carry it, and removes it.
            await putBytes(target, bucket!.endpoint, body);
          }
          expectError(await sendMedia(alice, bob, { mediaId: target.mediaId }), "BAD_REQUEST");
          expect(await stored(target.mediaId)).to.equal(null);
        }
        expect(await count("messages")).to.equal(messagesBefore);
      });

      it("refuses a PUT after the upload URL expired, and an altered or expired download URL (403)", async () => {
        const alice = await connect(uniqueId("alice"));
        const bytes = Buffer.from("late");
        const mediaId = await upload(alice, urlOf(a), bytes);
        const link = okReply(await alice.request("media:url", { mediaId }));
        if (kind === "disk") {
          const target = await askUpload(alice, bytes, "image/png");
          const url = absolute(link.url, urlOf(a));
          const altered = [
            url.replace(/sig=./, (s) => (s.endsWith("A") ? "sig=B" : "sig=A")),
            url.replace(/exp=(\d+)/, (_, e) => `exp=${Number(e) + 60_000}`),
            url.replace(mediaId, (await askUpload(alice, bytes, "image/png")).mediaId),
            // An upload URL does not download, nor the other way round.
            absolute(target.url, urlOf(a)),
            url.split("?")[0]!,
          ];
          for (const bad of altered) expect((await http("GET", bad)).status, bad).to.equal(403);
          expect((await http("PUT", url, { body: bytes })).status).to.equal(403);
          clock.advance(16 * 60_000); // past both the download URL (5 min) and the upload URL (15 min)
          expect((await http("GET", url)).status).to.equal(403);
          expect((await putBytes(target, urlOf(b), bytes)).status).to.equal(403);
          expect(await stored(target.mediaId)).to.equal(null);
        } else {
          // Presigned by the AWS SDK with the system's clock: expiry is tested on the store itself
          // (test/contracts/mediaStore.test.ts); here, an object key that is not the URL's is refused.
          const other = `${mediaId.slice(0, -1)}${mediaId.endsWith("0") ? "1" : "0"}`;
          const answer = await http("GET", link.url.replace(`media/${mediaId}`, `media/${other}`));
          expect(answer.status).to.be.oneOf([403, 404]);
        }
      });

      it("refuses an unknown mediaId, someone else's unsent upload, and media the caller cannot see, alike", async () => {
        const [alice, bob, carol] = await Promise.all([connect(uniqueId("alice")), connect(uniqueId("bob")), connect(uniqueId("carol"))]);
        const aliceUnsent = await upload(alice, urlOf(a), Buffer.from("unsent"));
        const toBob = await upload(alice, urlOf(a), Buffer.from("for bob only"));
        expectOk(await sendMedia(alice, bob.userId, { mediaId: toBob }));
        const messagesBefore = await count("messages");
        const unknown = "01900000-0000-7000-8000-000000000000";
        for (const [who, mediaId] of [
          [carol, unknown],
          [bob, aliceUnsent],
          [carol, toBob],
        ] as const) {
          const url = await who.request("media:url", { mediaId });
          expectError(url, "NOT_FOUND");
          // The same message for all three: nothing tells them apart.
          expect((url as { error: { message: string } }).error.message).to.equal("no such media");
          expectError(await sendMedia(who, alice.userId, { mediaId }), "BAD_REQUEST");
        }
        // Bob can see it (and forward it); alice, the uploader, too.
        expectOk(await bob.request("media:url", { mediaId: toBob }));
        expect(await count("messages")).to.equal(messagesBefore);
      });

      it("refuses a thumbnail over 16 KiB or that is not a raster image data URL", async () => {
        const alice = await connect(uniqueId("alice"));
        const mediaId = await upload(alice, urlOf(a), Buffer.from("pic"));
        const before = await count("messages");
        const bad = [
          `data:image/png;base64,${"A".repeat(16 * 1024)}`,
          "data:text/html;base64,PGgxPmhpPC9oMT4=",
          "data:image/svg+xml;base64,PHN2Zy8+",
          "https://example.com/x.png",
          "data:image/png;base64,not base64!",
        ];
        for (const thumbnail of bad) expectError(await sendMedia(alice, uniqueId("bob"), { mediaId, thumbnail }), "BAD_REQUEST", thumbnail.slice(0, 40));
        for (const width of [0, -3, 1.5]) expectError(await sendMedia(alice, uniqueId("bob"), { mediaId, width }), "BAD_REQUEST");
        expect(await count("messages")).to.equal(before);
      });

      it("refuses a path-like or malformed id, over the socket (BAD_REQUEST) and over HTTP (404)", async () => {
        const alice = await connect(uniqueId("alice"));
        for (const mediaId of ["../../etc/passwd", "x", "01900000-0000-7000-8000-00000000000/", "", 5 as never]) {
          expectError(await alice.request("media:url", { mediaId }), "BAD_REQUEST");
          expectError(await sendMedia(alice, uniqueId("bob"), { mediaId }), "BAD_REQUEST");
        }
        if (kind === "disk") {
          for (const p of ["/media/..%2F..%2Fetc%2Fpasswd", "/media/not-an-id", "/media/", "/media/a/b"]) {
            const answer = await http("GET", `${urlOf(a)}${p}?exp=1&sig=x`);
            expect(answer.status, p).to.be.oneOf([403, 404]);
            expect(answer.status, p).to.not.equal(200);
          }
        }
      });

      it("refuses an empty message without media, and media without content is fine", async () => {
        const alice = await connect(uniqueId("alice"));
        expectError(await alice.request("message:send", { clientMsgId: uniqueId("c"), to: uniqueId("bob"), content: "" }), "BAD_REQUEST");
        const mediaId = await upload(alice, urlOf(a), Buffer.from("no caption"));
        expectOk(await sendMedia(alice, uniqueId("bob"), { mediaId }));
      });
    });

    describe("lifetime (the clock moves by days from here on)", () => {
      it("forwarding reuses the bytes; deleting the original keeps them for the forward; expiry of the last one removes them", async () => {
        const [alice, bob, carol] = await Promise.all([connect(uniqueId("alice")), connect(uniqueId("bob")), connect(uniqueId("carol"))]);
        const bytes = Buffer.from("a voice note");
        const mediaId = await upload(alice, urlOf(a), bytes, "audio/ogg");
        const original = okReply(await sendMedia(alice, bob.userId, { mediaId, durationMs: 3000 })).message;
        clock.advance(DAY_MS); // a day later bob forwards it: the same bytes, no copy
        const forward = okReply(await sendMedia(bob, carol.userId, { mediaId, durationMs: 3000 }, "listen")).message;
        expect(forward.media).to.include({ mediaId, mime: "audio/ogg", size: bytes.length });
        expect(await count("media")).to.be.greaterThan(0);

        // Alice deletes hers for everyone: it carries media null everywhere, the bytes stay for carol.
        const del = okReply(await alice.request("message:delete", { clientMsgId: uniqueId("d"), messageId: original.id }));
        expect(del.message.kind).to.equal("delete");
        const history = okReply(await bob.request("message:history", { conversationId: original.conversationId }));
        expect(history.messages.find((m: Message) => m.id === original.id)).to.deep.include({ content: "", media: null });
        await a.sweeper.sweepNow();
        expect(await stored(mediaId)).to.equal(bytes.length);
        // Alice can no longer reach it through her conversation, but bob and carol still can through theirs.
        expectOk(await carol.request("media:url", { mediaId }));
        const got = await http("GET", absolute(okReply(await carol.request("media:url", { mediaId })).url, urlOf(b)));
        expect(got.body.equals(bytes)).to.equal(true);

        // The forward expires (30 days after it was sent): nothing refers to the bytes any more.
        clock.advance(31 * DAY_MS);
        await b.sweeper.sweepNow();
        expect(await stored(mediaId)).to.equal(null);
        expect((await pg.query("SELECT 1 FROM media WHERE media_id = $1", [mediaId])).rows).to.have.length(0);
        expect(await count("media_trash")).to.equal(0);
        expectError(await carol.request("media:url", { mediaId }), "NOT_FOUND");
      });

      it("removes an upload never sent after 24 hours, and never one a retained message carries", async () => {
        const [alice, bob] = await Promise.all([connect(uniqueId("alice")), connect(uniqueId("bob"))]);
        const unsent = await upload(alice, urlOf(a), Buffer.from("never sent"));
        const sent = await upload(alice, urlOf(a), Buffer.from("sent"));
        expectOk(await sendMedia(alice, bob.userId, { mediaId: sent }));
        clock.advance(23 * 3_600_000);
        await a.sweeper.sweepNow();
        expect(await stored(unsent)).to.equal(4 + 6);
        clock.advance(2 * 3_600_000);
        // Too late to send it too.
        expectError(await sendMedia(alice, bob.userId, { mediaId: unsent }), "BAD_REQUEST");
        await a.sweeper.sweepNow();
        expect(await stored(unsent)).to.equal(null);
        expect(await stored(sent)).to.equal(4);
        expectOk(await bob.request("media:url", { mediaId: sent }));
        // Nothing a retained message carries is gone: every media id in messages still has its row and bytes.
        const { rows } = await pg.query<{ media_id: string }>(
          "SELECT DISTINCT media_id FROM messages WHERE media_id IS NOT NULL AND expires_at > $1",
          [clock.now()],
        );
        for (const r of rows) expect(await stored(r.media_id), r.media_id).to.not.equal(null);
      });
    });
  });
}
