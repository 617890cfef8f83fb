import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import type { ChatMessage } from "../src/client";
import { uniqueId, waitFor } from "./helpers/device";
import { PNG_1X1, THUMB } from "./helpers/media";
import { next, record, SdkClients } from "./helpers/sdk";
import { urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";

describe("SDK: sendMedia and mediaUrl", function () {
  this.timeout(30_000);
  const dataDir = mkdtempSync(path.join(tmpdir(), "ticks-sdk-media-"));
  const suite = useServerSuite({ DATA_DIR: dataDir });
  const clients = new SdkClients();
  afterEach(() => clients.closeAll());
  after(() => rm(dataDir, { recursive: true, force: true }));

  it("answers a local message at once, reports upload progress, and the recipient gets the media and can fetch it", async () => {
    const [alice, bob] = [uniqueId("alice"), uniqueId("bob")];
    const a = await clients.connected(urlOf(suite.server), { userId: alice });
    const b = await clients.connected(urlOf(suite.server), { userId: bob });
    const progress = record(a, "progress");
    const bytes = new Uint8Array(300_000).map((_, i) => i % 251);
    const local = await a.sendMedia({ to: bob }, bytes, { mime: "image/png", name: "big.png", caption: "look", width: 10, height: 20, thumbnail: THUMB });
    expect(local).to.include({ status: "pending", content: "look", to: bob });
    const [got] = await next(b, "message", (m: ChatMessage) => m.clientMsgId === local.clientMsgId);
    expect(got.media).to.include({ mime: "image/png", size: bytes.length, name: "big.png", width: 10, height: 20, thumbnail: THUMB });
    // Progress went up to the whole size, never down.
    const loaded = progress.map(([p]) => p.loaded);
    expect(loaded.at(-1)).to.equal(bytes.length);
    expect(loaded.length).to.be.greaterThan(2);
    expect([...loaded].sort((x, y) => x - y)).to.deep.equal(loaded);
    const url = await b.mediaUrl(got.media!.mediaId);
    const body = new Uint8Array(await (await fetch(url)).arrayBuffer());
    expect(Buffer.from(body).equals(Buffer.from(bytes))).to.equal(true);
  });

  it("retries a failed upload and then sends, with the same clientMsgId: one message is stored", async () => {
    const [alice, bob] = [uniqueId("alice"), uniqueId("bob")];
    const a = await clients.connected(urlOf(suite.server), { userId: alice });
    // The first PUT dies on the way (as a dropped network would); later ones go through.
    const realFetch = globalThis.fetch;
    let puts = 0;
    globalThis.fetch = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      if (init?.method === "PUT" && puts++ === 0) throw new TypeError("fetch failed");
      return realFetch(input, init);
    }) as typeof fetch;
    try {
      const failed = record(a, "status");
      const local = await a.sendMedia({ to: bob }, new Uint8Array(PNG_1X1), { mime: "image/png" });
      await waitFor(async () => (await suite.pg.query("SELECT 1 FROM messages WHERE client_msg_id = $1", [local.clientMsgId])).rowCount === 1, "stored");
      expect(puts).to.equal(2);
      expect(failed.filter(([c]) => c.status === "failed")).to.deep.equal([]);
      const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [alice]);
      expect(rows[0].n).to.equal(1);
    } finally {
      globalThis.fetch = realFetch;
    }
  });

  it("a refused upload fails the message with the server's reason, and nothing is sent", async () => {
    const a = await clients.connected(urlOf(suite.server), { userId: uniqueId("alice") });
    const local = await a.sendMedia({ to: uniqueId("bob") }, new Uint8Array(3), { mime: "not a mime" });
    const [change] = await next(a, "status", (c) => c.clientMsgId === local.clientMsgId && c.status === "failed");
    expect(change).to.deep.include({ status: "failed" });
    expect((change as { error?: { code: string } }).error?.code).to.equal("BAD_REQUEST");
  });
});
