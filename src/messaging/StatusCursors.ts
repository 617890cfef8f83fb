import { createCipheriv, createDecipheriv } from "node:crypto";
import { AppError } from "../protocol";
import { pooledRandomBytes } from "./randomPool";

/**
 * Status stream cursors. What a cursor holds is a stream position (a bigint), sealed with
 * AES-256-GCM: the user id it was given to is the authenticated data, so
 * - a client cannot read it (positions are global: in clear they would tell how busy the
 *   server is) nor make one up: opening fails, and that is BAD_REQUEST;
 * - a cursor given to another user fails to open for this one (its tag was made with the
 *   other user id), so it is BAD_REQUEST too, and it could never select that user's rows
 *   anyway: a page reads only the caller's stream.
 * Layout: base64url(nonce 12 bytes | sealed position 8 bytes | tag 16 bytes), 48 characters.
 */
export class StatusCursors {
  private static readonly AAD_PREFIX = "ticks status cursor v1\u0000";

  constructor(private readonly key: Uint8Array) {
    if (key.length !== 32) throw new Error("a status cursor key is 32 bytes");
  }

  seal(userId: string, pos: string | bigint): string {
    // Random 96-bit nonces, as GCM wants for one key across nodes and restarts (never a counter).
    const nonce = pooledRandomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, nonce);
    cipher.setAAD(Buffer.from(StatusCursors.AAD_PREFIX + userId, "utf8"));
    const plain = Buffer.alloc(8);
    plain.writeBigUInt64BE(BigInt(pos));
    const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64url");
  }

  /** The position a cursor holds, if this server gave it to `userId`; else BAD_REQUEST. */
  open(userId: string, cursor: string): string {
    const raw = /^[A-Za-z0-9_-]{48}$/.test(cursor) ? Buffer.from(cursor, "base64url") : null;
    if (!raw || raw.length !== 36) throw notOurs();
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(StatusCursors.AAD_PREFIX + userId, "utf8"));
      decipher.setAuthTag(raw.subarray(20, 36));
      const plain = Buffer.concat([decipher.update(raw.subarray(12, 20)), decipher.final()]);
      return plain.readBigUInt64BE().toString();
    } catch {
      throw notOurs();
    }
  }
}

const notOurs = () => new AppError("BAD_REQUEST", "status:sync: after is not a cursor this server gave you");
