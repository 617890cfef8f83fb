/**
 * Verifies a token with whatever the configuration names: an HS256 secret, a PEM public key
 * or an identity provider's JWKS. The accepted algorithms always come from the configured
 * key, never from the token (no `none`, no HS256 signed with a public key's text).
 */
import { errors, importSPKI, jwtVerify, type CryptoKey, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import type { AuthConfig } from "../config";
import { isUserId } from "../protocol";
import { issuerScopedKeys, type JwksEvents } from "./jwks";
import { RSA_ALGORITHMS } from "./publicKey";

/** Longer strings are not tokens any provider issues; refused before any parsing. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

export type VerifiedToken = {
  userId: string;
  /** The token's `exp` in epoch milliseconds; null when it has none. */
  expiresAt: number | null;
};

/**
 * Every refusal is this one error: the client learns "unauthorized" and nothing about why.
 * `reason` is for the server's own debug log.
 */
export class InvalidToken extends Error {
  constructor(readonly reason: string) {
    super("invalid token");
    this.name = "InvalidToken";
  }
}

export interface TokenVerifier {
  /** Resolves the token's user and expiry, or rejects with InvalidToken. */
  verify(token: unknown): Promise<VerifiedToken>;
}

type JwtAuth = Exclude<AuthConfig, { mode: "dev" }>;

export function createTokenVerifier(auth: JwtAuth, events: JwksEvents = {}): TokenVerifier {
  const { key, algorithms } = keyFor(auth, events);
  const options: JWTVerifyOptions = {
    algorithms,
    ...(auth.issuer !== undefined ? { issuer: auth.issuer } : {}),
    ...(auth.audience !== undefined ? { audience: auth.audience } : {}),
  };
  return {
    async verify(token) {
      if (typeof token !== "string" || token.length === 0) throw new InvalidToken("no token");
      if (token.length > MAX_TOKEN_LENGTH) throw new InvalidToken("token too long");
      let payload;
      try {
        ({ payload } = await jwtVerify(token, key as JWTVerifyGetKey, options));
      } catch (err) {
        // jose's own errors are the token's fault (or the JWKS endpoint's); anything else is ours.
        if (err instanceof errors.JOSEError || (err instanceof Error && err.name === "TimeoutError")) {
          throw new InvalidToken(err.message);
        }
        throw err;
      }
      if (!isUserId(payload.sub)) throw new InvalidToken("sub is not a user id");
      return { userId: payload.sub, expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : null };
    },
  };
}

function keyFor(auth: JwtAuth, events: JwksEvents): { key: Uint8Array | JWTVerifyGetKey; algorithms: string[] } {
  if ("secret" in auth) return { key: new TextEncoder().encode(auth.secret), algorithms: ["HS256"] };
  if ("publicKey" in auth) {
    // One imported key per algorithm (WebCrypto binds a key to one); picked by the header's alg,
    // which jwtVerify has already checked against `algorithms`.
    const imported = new Map(auth.publicKey.algorithms.map((alg) => [alg, importFor(auth.publicKey.pem, alg)] as const));
    const key: JWTVerifyGetKey = async (header) => {
      const found = imported.get(header.alg);
      if (!found) throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
      return found;
    };
    return { key, algorithms: auth.publicKey.algorithms };
  }
  // A JWKS may hold RSA, EC and OKP keys at once; jose matches each key's type and curve to the alg.
  return {
    key: issuerScopedKeys(auth.jwks, auth.issuer, events),
    algorithms: [...RSA_ALGORITHMS, "ES256", "ES384", "ES512", "EdDSA", "Ed25519"],
  };
}

function importFor(pem: string, alg: string): Promise<CryptoKey> {
  const key = importSPKI(pem, alg);
  key.catch(() => {}); // a failure surfaces when a token needs this key, not as an unhandled rejection
  return key;
}
