import { expect } from "chai";
import { createCipheriv, randomBytes } from "node:crypto";
import { StatusCursors } from "../src/messaging/StatusCursors";
import { AppError } from "../src/protocol";

/** A v1 cursor as servers before v2 sealed them: nonce | AES-256-GCM(position) | tag, the user id as AAD. */
function v1Cursor(key: Buffer, userId: string, pos: bigint): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(Buffer.from("ticks status cursor v1\u0000" + userId, "utf8"));
  const plain = Buffer.alloc(8);
  plain.writeBigUInt64BE(pos);
  const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64url");
}

const refused = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AppError);
    expect((err as AppError).code).to.equal("BAD_REQUEST");
    return;
  }
  expect.fail("the cursor opened");
};

describe("status cursors", () => {
  const key = randomBytes(32);
  const cursors = new StatusCursors(key);

  it("opens what it sealed for the same user, across positions up to 2^63 - 1, on another instance with the same key", () => {
    const again = new StatusCursors(key);
    for (const pos of [1n, 2n, 255n, 65_536n, 123_456_789_012n, 2n ** 63n - 1n]) {
      const cursor = cursors.seal("alice", pos);
      expect(cursor).to.match(/^[A-Za-z0-9_-]{22}$/);
      expect(again.open("alice", cursor)).to.equal(pos.toString());
    }
  });

  it("hides the position: neighbouring positions give unrelated cursors", () => {
    const a = Buffer.from(cursors.seal("alice", 1000n), "base64url");
    const b = Buffer.from(cursors.seal("alice", 1001n), "base64url");
    let differing = 0;
    for (let i = 0; i < 16; i++) differing += a[i] !== b[i] ? 1 : 0;
    expect(differing).to.be.greaterThan(8);
  });

  it("refuses another user's cursor, a changed one, one made with another key, and made-up strings", () => {
    const cursor = cursors.seal("alice", 42n);
    refused(() => cursors.open("bob", cursor));
    refused(() => new StatusCursors(randomBytes(32)).open("alice", cursor));
    const raw = Buffer.from(cursor, "base64url");
    for (let i = 0; i < 16; i++) {
      const changed = Buffer.from(raw);
      changed[i] = changed[i]! ^ 0x01;
      refused(() => cursors.open("alice", changed.toString("base64url")));
    }
    for (const s of ["", "x", Buffer.alloc(16).toString("base64url"), cursor + "A", cursor.slice(1), "a".repeat(48), "!".repeat(22)]) {
      refused(() => cursors.open("alice", s));
    }
  });

  it("opens only the spelling it wrote: no other last character decodes to the same cursor", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (const pos of [1n, 2n, 3n, 4n, 77n]) {
      const cursor = cursors.seal("alice", pos);
      for (const last of alphabet) {
        const spelled = cursor.slice(0, -1) + last;
        if (spelled === cursor) expect(cursors.open("alice", spelled)).to.equal(pos.toString());
        else refused(() => cursors.open("alice", spelled));
      }
    }
  });

  it("still opens v1 cursors (AES-256-GCM, 48 characters) kept by devices from before, for their user only", () => {
    const old = v1Cursor(key, "alice", 987_654n);
    expect(old).to.have.length(48);
    expect(cursors.open("alice", old)).to.equal("987654");
    refused(() => cursors.open("bob", old));
    refused(() => cursors.open("alice", old.slice(0, -2) + (old.endsWith("AA") ? "BB" : "AA")));
  });
});
