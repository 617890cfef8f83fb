import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import { maxPacketBytes as maxHttpBufferSize } from "../src/protocol/packets";
import { uniqueId } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";
import { upload } from "./helpers/media";
import { urlOf } from "./helpers/server";

type Reply = { ok: boolean; error?: { code: string } };

/**
 * Content within MAX_CONTENT_LENGTH is always answered (ok, or TOO_LARGE just over it) in any
 * encoding; only a packet over maxHttpBufferSize closes the connection, as docs/protocol.md says.
 */
describe("size limits: MAX_CONTENT_LENGTH and the packet limit", () => {
  const MAX = 12_000; // big enough that the buffer is not the 64 KiB floor
  // Uploads (the media case below) land here, removed at the end.
  const dataDir = mkdtempSync(path.join(tmpdir(), "ticks-size-"));
  const suite = useServerSuite({ MAX_CONTENT_LENGTH: String(MAX), DATA_DIR: dataDir });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  /** Sends and waits for the answer or the disconnect, whichever comes. */
  async function attempt(content: string): Promise<Reply | { disconnected: string }> {
    const d = await suite.device(uniqueId("sizer")).connectSynced();
    return new Promise((resolve) => {
      d.socket.once("disconnect", (reason) => resolve({ disconnected: reason }));
      d.socket
        .timeout(10_000)
        .emit("message:send", { clientMsgId: uuidv4(), to: "size-peer", content }, (err: Error | null, reply: Reply) =>
          resolve(err ? { disconnected: `no answer: ${err.message}` } : reply),
        );
    });
  }

  it("answers the longest content in the costliest JSON encoding (6 bytes a code point): stored", async () => {
    const content = "\u0001".repeat(MAX);
    expect(Buffer.byteLength(JSON.stringify(content))).to.be.greaterThan(4 * MAX + 16 * 1024); // the old limit
    expect(await attempt(content)).to.deep.include({ ok: true });
    expect(await attempt("😀".repeat(MAX))).to.deep.include({ ok: true });
  });

  it("answers TOO_LARGE one code point over, in that encoding too", async () => {
    for (const content of ["\u0001".repeat(MAX + 1), "😀".repeat(MAX + 1), "x".repeat(MAX + 1)]) {
      expect(await attempt(content)).to.deep.include({ ok: false, error: { code: "TOO_LARGE", message: `content is longer than ${MAX} characters` } });
    }
  });

  it("answers the longest caption in the costliest encoding with the largest thumbnail: stored", async () => {
    const d = await suite.device(uniqueId("sizer")).connectSynced();
    const mediaId = await upload(d, urlOf(suite.server), Buffer.from("x"), "image/png");
    const thumbnail = `data:image/png;base64,${"A".repeat(16 * 1024 - "data:image/png;base64,".length)}`;
    expect(thumbnail.length).to.equal(16 * 1024);
    const reply = await d.request("message:send", { clientMsgId: uuidv4(), to: "size-peer", content: "\u0001".repeat(MAX), media: { mediaId, thumbnail } });
    expect(reply).to.deep.include({ ok: true });
  });

  it("closes the connection, with no answer, for a packet over maxHttpBufferSize: the client sees transport close", async () => {
    const content = "x".repeat(maxHttpBufferSize(MAX) + 1);
    expect(await attempt(content)).to.deep.equal({ disconnected: "transport close" });
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE length(content) > $1", [MAX]);
    expect(rows[0].n).to.equal(0);
  });
});
