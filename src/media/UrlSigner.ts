import { createHmac, timingSafeEqual } from "node:crypto";

export type Verdict = "ok" | "expired" | "bad";

/**
 * Signs and checks the URLs Ticks serves itself (the disk store): `exp` (epoch ms) and
 * `sig`, an HMAC-SHA256 of the operation, the media id and `exp`. The key is one every node
 * shares (MEDIA_URL_SECRET, or the key kept in the database: storage/mediaUrlKey.ts), so any
 * node accepts a URL made by another. An upload URL cannot be used to download, nor the
 * other way round, nor for another id.
 */
export class UrlSigner {
  constructor(private readonly key: Buffer) {}

  /** The query string (without `?`) that authorises `op` on `mediaId` until `expiresAt`. */
  sign(op: "get" | "put", mediaId: string, expiresAt: Date): string {
    const exp = String(expiresAt.getTime());
    return `exp=${exp}&sig=${this.mac(op, mediaId, exp)}`;
  }

  /** Whether `query` authorises `op` on `mediaId` at `now`. An altered URL is "bad", a late one "expired". */
  verify(op: "get" | "put", mediaId: string, query: URLSearchParams, now: Date): Verdict {
    const exp = query.get("exp");
    const sig = query.get("sig");
    if (!exp || !sig || !/^\d{1,16}$/.test(exp)) return "bad";
    const expected = Buffer.from(this.mac(op, mediaId, exp));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "bad";
    return Number(exp) > now.getTime() ? "ok" : "expired";
  }

  private mac(op: string, mediaId: string, exp: string): string {
    return createHmac("sha256", this.key).update(`ticks-media\n${op}\n${mediaId.toLowerCase()}\n${exp}`).digest("base64url");
  }
}
