import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import { maxPacketBytes as maxHttpBufferSize } from "../src/protocol/packets";
import { uniqueId } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";

type Reply = { ok: boolean; error?: { code: string } };

/**
 * Content within MAX_CONTENT_LENGTH is always answered (ok, or TOO_LARGE just over it) in any
 * encoding; only a packet over maxHttpBufferSize closes the connection, as docs/protocol.md says.
 */
describe("size limits: MAX_CONTENT_LENGTH and the packet limit", () => {
  const MAX = 12_000; // big enough that the buffer is not the 64 KiB floor
  const suite = useServerSuite({ MAX_CONTENT_LENGTH: String(MAX) });

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

  it("closes the connection, with no answer, for a packet over maxHttpBufferSize: the client sees transport close", async () => {
    const content = "x".repeat(maxHttpBufferSize(MAX) + 1);
    expect(await attempt(content)).to.deep.equal({ disconnected: "transport close" });
    const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE length(content) > $1", [MAX]);
    expect(rows[0].n).to.equal(0);
  });
});
