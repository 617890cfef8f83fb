/**
 * What a configured PEM public key may verify. The algorithms follow from the key itself,
 * never from a token's header: that is what rules out algorithm confusion (an HS256 token
 * "signed" with the public key's text as its secret names an algorithm this list lacks).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";

export const RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] as const;
/** EC curves by their OpenSSL names (what KeyObject reports), each with its one JWS algorithm. */
const EC_ALGORITHM: Record<string, string> = { prime256v1: "ES256", secp384r1: "ES384", secp521r1: "ES512" };
/** Shorter RSA keys are refused by jose at verification anyway; refuse them at start instead. */
const MIN_RSA_BITS = 2048;

export type PublicKeySpec = { pem: string; algorithms: string[] };

/** A PEM from an environment variable: real line breaks, or `\n` escapes as .env files write them. */
export const normalisePem = (text: string): string => text.replace(/\\n/g, "\n").trim();

/**
 * Checks a PEM is a public key Ticks can verify with and names its algorithms.
 * Throws an Error whose message says what is wrong (the caller adds the variable's name).
 */
export function describePublicKey(text: string): PublicKeySpec {
  const pem = normalisePem(text);
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem) || parsesAsPrivateKey(pem)) {
    throw new Error("is a private key; give the public key (openssl pkey -in private.pem -pubout)");
  }
  if (!/^-----BEGIN PUBLIC KEY-----/.test(pem)) {
    throw new Error('must be a PEM public key starting with "-----BEGIN PUBLIC KEY-----" (SPKI)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch (err) {
    throw new Error(`does not parse as a PEM public key (${(err as Error).message})`);
  }
  switch (key.asymmetricKeyType) {
    case "rsa": {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new Error(`is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
      return { pem, algorithms: [...RSA_ALGORITHMS] };
    }
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve ?? "unknown";
      const alg = EC_ALGORITHM[curve];
      if (!alg) throw new Error(`is an EC key on curve ${curve}; supported curves are P-256, P-384 and P-521`);
      return { pem, algorithms: [alg] };
    }
    case "ed25519":
      // "Ed25519" is the fully specified name (RFC 9864) of what "EdDSA" means here.
      return { pem, algorithms: ["EdDSA", "Ed25519"] };
    default:
      throw new Error(
        `is a ${key.asymmetricKeyType} key; supported are RSA (rsaEncryption), EC P-256/P-384/P-521 and Ed25519`,
      );
  }
}

function parsesAsPrivateKey(pem: string): boolean {
  try {
    createPrivateKey({ key: pem, format: "pem" });
    return true;
  } catch {
    return false;
  }
}
