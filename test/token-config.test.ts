import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { expect } from "chai";
import { ConfigError, loadConfig } from "../src/config";
import { TEST_SECRET } from "./helpers/server";

const base = { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/ticks" };
const JWKS_URL = "https://id.example.com/realms/ticks/protocol/openid-connect/certs";

function refused(env: Record<string, string>, variable: string, mentions: string[] = []): string {
  try {
    loadConfig({ ...base, ...env });
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message, JSON.stringify(env).slice(0, 200)).to.include(`${variable}:`);
    for (const m of mentions) expect(message).to.include(m);
    return message;
  }
  return expect.fail(`loadConfig accepted ${JSON.stringify(env).slice(0, 200)}`);
}

/** generateKeyPairSync for any key type (its overloads do not take a union). */
const generate = generateKeyPairSync as unknown as (type: string, options: object) => { publicKey: KeyObject; privateKey: KeyObject };

const pem = (type: string, options: object = {}) => {
  const { publicKey, privateKey } = generate(type, options);
  return {
    public: publicKey.export({ type: "spki", format: "pem" }).toString(),
    pkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    privateKey,
  };
};

describe("configuration of token verification", () => {
  const rsa = pem("rsa", { modulusLength: 2048 });
  const ec = pem("ec", { namedCurve: "P-384" });
  const ed = pem("ed25519");

  it("chooses the algorithms from the PEM key's type", () => {
    const algs = (key: string) => {
      const auth = loadConfig({ ...base, JWT_PUBLIC_KEY: key }).auth;
      return "publicKey" in auth ? auth.publicKey.algorithms : null;
    };
    expect(algs(rsa.public)).to.deep.equal(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]);
    expect(algs(ec.public)).to.deep.equal(["ES384"]);
    expect(algs(pem("ec", { namedCurve: "P-256" }).public)).to.deep.equal(["ES256"]);
    expect(algs(pem("ec", { namedCurve: "P-521" }).public)).to.deep.equal(["ES512"]);
    expect(algs(ed.public)).to.deep.equal(["EdDSA", "Ed25519"]);
    // jwt mode by default, in production too
    const prod = loadConfig({ ...base, NODE_ENV: "production", JWT_PUBLIC_KEY: ed.public });
    expect(prod.auth.mode).to.equal("jwt");
  });

  it("takes a JWKS URL with its defaults, and issuer and audience next to any key", () => {
    const auth = loadConfig({ ...base, JWT_JWKS_URL: JWKS_URL, JWT_ISSUER: "https://id.example.com/realms/ticks", JWT_AUDIENCE: "ticks" }).auth;
    expect(auth).to.deep.equal({
      mode: "jwt",
      jwks: { url: JWKS_URL, cooldownMs: 30_000, cacheMaxAgeMs: 600_000, timeoutMs: 5000 },
      issuer: "https://id.example.com/realms/ticks",
      audience: "ticks",
    });
    expect(loadConfig({ ...base, JWT_SECRET: TEST_SECRET, JWT_AUDIENCE: "ticks" }).auth).to.deep.equal({
      mode: "jwt",
      secret: TEST_SECRET,
      audience: "ticks",
    });
    const tuned = loadConfig({ ...base, JWT_JWKS_URL: JWKS_URL, JWKS_COOLDOWN_MS: "0", JWKS_CACHE_MAX_AGE_MS: "60000", JWKS_TIMEOUT_MS: "800" });
    expect("jwks" in tuned.auth && tuned.auth.jwks).to.deep.include({ cooldownMs: 0, cacheMaxAgeMs: 60_000, timeoutMs: 800 });
  });

  it("TOKEN_REFRESH_WINDOW_MS: 60000 by default, a whole number of ms", () => {
    expect(loadConfig(base).tokenRefreshWindowMs).to.equal(60_000);
    expect(loadConfig({ ...base, TOKEN_REFRESH_WINDOW_MS: "0" }).tokenRefreshWindowMs).to.equal(0);
    for (const v of ["-1", "abc", "1.5"]) refused({ TOKEN_REFRESH_WINDOW_MS: v }, "TOKEN_REFRESH_WINDOW_MS");
  });

  it("refuses more than one way to verify tokens, naming both", () => {
    refused({ JWT_SECRET: TEST_SECRET, JWT_PUBLIC_KEY: rsa.public }, "JWT_PUBLIC_KEY", ["JWT_SECRET"]);
    refused({ JWT_SECRET: TEST_SECRET, JWT_JWKS_URL: JWKS_URL }, "JWT_JWKS_URL", ["JWT_SECRET"]);
    refused({ JWT_PUBLIC_KEY: rsa.public, JWT_JWKS_URL: JWKS_URL }, "JWT_JWKS_URL", ["JWT_PUBLIC_KEY"]);
  });

  it("refuses a PEM that does not parse, or is not a public key", () => {
    for (const bad of ["hello", "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", rsa.public.slice(0, 200), TEST_SECRET]) {
      refused({ JWT_PUBLIC_KEY: bad }, "JWT_PUBLIC_KEY");
    }
    // A private key in the public key's place: refused, whatever its PEM label.
    refused({ JWT_PUBLIC_KEY: rsa.pkcs8 }, "JWT_PUBLIC_KEY", ["private key"]);
    refused({ JWT_PUBLIC_KEY: rsa.privateKey.export({ type: "pkcs1", format: "pem" }).toString() }, "JWT_PUBLIC_KEY", ["private key"]);
    refused({ JWT_PUBLIC_KEY: ec.privateKey.export({ type: "sec1", format: "pem" }).toString() }, "JWT_PUBLIC_KEY", ["private key"]);
    refused({ JWT_PUBLIC_KEY: ed.pkcs8 }, "JWT_PUBLIC_KEY", ["private key"]);
  });

  it("refuses keys it cannot verify safely: short RSA, other curves, Ed448, X25519", () => {
    refused({ JWT_PUBLIC_KEY: pem("rsa", { modulusLength: 1024 }).public }, "JWT_PUBLIC_KEY", ["1024-bit"]);
    refused({ JWT_PUBLIC_KEY: pem("ec", { namedCurve: "secp256k1" }).public }, "JWT_PUBLIC_KEY", ["secp256k1"]);
    refused({ JWT_PUBLIC_KEY: pem("ed448").public }, "JWT_PUBLIC_KEY", ["ed448"]);
    refused({ JWT_PUBLIC_KEY: pem("x25519").public }, "JWT_PUBLIC_KEY", ["x25519"]);
  });

  it("refuses a JWKS URL that is not http(s), and JWKS settings without one", () => {
    refused({ JWT_JWKS_URL: "not a url" }, "JWT_JWKS_URL");
    refused({ JWT_JWKS_URL: "ftp://id.example.com/certs" }, "JWT_JWKS_URL");
    refused({ JWT_SECRET: TEST_SECRET, JWKS_COOLDOWN_MS: "1000" }, "JWKS_COOLDOWN_MS", ["JWT_JWKS_URL"]);
    refused({ JWT_JWKS_URL: JWKS_URL, JWKS_TIMEOUT_MS: "0" }, "JWKS_TIMEOUT_MS");
  });

  it("refuses AUTH_MODE=dev next to a key, issuer or audience, and AUTH_MODE=jwt without a key", () => {
    refused({ AUTH_MODE: "dev", JWT_PUBLIC_KEY: rsa.public }, "JWT_PUBLIC_KEY", ["AUTH_MODE=dev"]);
    refused({ AUTH_MODE: "dev", JWT_JWKS_URL: JWKS_URL }, "JWT_JWKS_URL", ["AUTH_MODE=dev"]);
    refused({ AUTH_MODE: "dev", JWT_ISSUER: "x" }, "JWT_ISSUER");
    refused({ JWT_AUDIENCE: "ticks" }, "JWT_AUDIENCE"); // no key: dev mode by default
    refused({ AUTH_MODE: "jwt", JWT_ISSUER: "x" }, "AUTH_MODE", ["JWT_PUBLIC_KEY", "JWT_JWKS_URL"]);
    // As before: dev mode with a JWT_SECRET is accepted outside production.
    expect(loadConfig({ ...base, AUTH_MODE: "dev", JWT_SECRET: TEST_SECRET }).auth).to.deep.equal({ mode: "dev" });
  });
});
