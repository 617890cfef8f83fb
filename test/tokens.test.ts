/**
 * Tokens from an identity provider: PEM keys and a JWKS served by a local HTTP server, with
 * every way a token or the provider can be wrong. Handshake refusals all look alike.
 */
import { expect } from "chai";
import { createTokenVerifier, InvalidToken } from "../src/auth/TokenVerifier";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/device";
import { b64url, tryConnect } from "./helpers/handshake";
import { JwksServer, makeKey, nowSec, signHs256, signWith, type TestKey } from "./helpers/jwks";
import { startServer, urlOf } from "./helpers/server";
import { accepts, acceptedEventually, expectRefused, refuses } from "./helpers/tokenChecks";

const ISSUER = "https://id.example.com/realms/ticks";
const AUDIENCE = "ticks";
const claims = (sub: string) => ({ sub, iss: ISSUER, aud: AUDIENCE });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("tokens from an identity provider", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const servers: RunningTicks[] = [];
  const jwksServers: JwksServer[] = [];
  const start = async (env: Record<string, string>) => {
    const server = await startServer(db.url, { AUTH_MODE: "jwt", ...env });
    servers.push(server);
    return urlOf(server);
  };

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    await Promise.all(jwksServers.splice(0).map((s) => s.close()));
    await db.drop();
  });

  describe("JWT_JWKS_URL (Keycloak-style realm certs, JWT_ISSUER, JWT_AUDIENCE)", () => {
    const COOLDOWN_MS = 1500;
    let rsa: TestKey, ec: TestKey, ed: TestKey, stranger: TestKey;
    let jwks: JwksServer;
    let url: string;

    before(async () => {
      [rsa, ec, ed, stranger] = await Promise.all([
        makeKey("RS256", "rsa-1"),
        makeKey("ES256", "ec-1"),
        makeKey("EdDSA", "ed-1"),
        makeKey("RS256", "rsa-1"), // same kid as the real key, another private key
      ]);
      jwks = await JwksServer.start([rsa, ec, ed]);
      jwksServers.push(jwks);
      url = await start({
        JWT_JWKS_URL: jwks.url,
        JWT_ISSUER: ISSUER,
        JWT_AUDIENCE: AUDIENCE,
        JWKS_COOLDOWN_MS: String(COOLDOWN_MS),
        JWKS_TIMEOUT_MS: "500",
      });
    });

    it("accepts RS256, ES256 and EdDSA tokens; each JWK only with its own alg", async () => {
      for (const key of [rsa, ec, ed]) {
        const sub = uniqueId(key.alg);
        await accepts(url, await signWith(key, claims(sub)), sub, key.alg);
      }
      // The JWK says alg RS256: a PS256 token for it is refused, though the RSA key could verify it.
      await refuses(url, await signWith(rsa, claims(uniqueId("ps")), { alg: "PS256" }), "PS256 for an RS256 JWK");
      // A token without a kid: the one key that fits the alg is used.
      const noKid = uniqueId("nokid");
      await accepts(url, await signWith(ec, claims(noKid), { kid: null }), noKid, "ES256 without kid");
    });

    it("enforces the issuer and the audience", async () => {
      const sub = uniqueId("alice");
      await refuses(url, await signWith(rsa, { sub, iss: "https://evil.example.com/realms/ticks", aud: AUDIENCE }), "wrong iss");
      await refuses(url, await signWith(rsa, { sub, aud: AUDIENCE }), "no iss");
      await refuses(url, await signWith(rsa, { sub, iss: ISSUER, aud: "another-app" }), "wrong aud");
      await refuses(url, await signWith(rsa, { sub, iss: ISSUER }), "no aud");
      // aud as an array containing ours is accepted (RFC 7519 allows both forms).
      await accepts(url, await signWith(rsa, { sub, iss: ISSUER, aud: ["account", AUDIENCE] }), sub, "aud array");
    });

    it("looks keys up by issuer first: another issuer's token fetches nothing, even with a new kid", async () => {
      await sleep(COOLDOWN_MS + 100); // an unknown kid from the trusted issuer would fetch now
      const before = jwks.hits;
      const sub = uniqueId("tenant-b");
      for (const kid of [rsa.kid, "kid-of-another-tenant"]) {
        const token = await signWith(rsa, { sub, iss: "https://id.example.com/realms/other", aud: AUDIENCE }, { kid });
        await refuses(url, token, `other issuer, kid ${kid}`);
      }
      expect(jwks.hits - before, "JWKS requests for another issuer's tokens").to.equal(0);
    });

    it("refuses a token signed by another key, HS256 with the public key's text, alg none, expired, nbf in the future", async () => {
      const sub = uniqueId("mallory");
      await refuses(url, await signWith(stranger, claims(sub)), "another key, same kid");
      await refuses(url, await signWith(stranger, claims(sub), { kid: null }), "another key, no kid");
      // Algorithm confusion: the public key (PEM, JWK JSON, modulus) used as an HMAC secret.
      for (const secret of [rsa.publicPem, rsa.publicPem.trim(), JSON.stringify(rsa.jwk), String(rsa.jwk.n)]) {
        await refuses(url, await signHs256(secret, claims(sub), rsa.kid), "HS256 with the public key as secret");
        await refuses(url, await signHs256(secret, claims(sub)), "HS256 with the public key as secret, no kid");
      }
      const payload = b64url({ ...claims(sub), iat: nowSec(), exp: nowSec() + 3600 });
      for (const header of [{ alg: "none" }, { alg: "none", kid: rsa.kid }, { alg: "None", typ: "JWT" }]) {
        await refuses(url, `${b64url(header)}.${payload}.`, `alg ${header.alg}`);
      }
      await refuses(url, await signWith(rsa, { ...claims(sub), iat: nowSec() - 7200, exp: nowSec() - 60 }), "expired");
      await refuses(url, await signWith(ec, { ...claims(sub), nbf: nowSec() + 600 }), "nbf in the future");
      // An EC key's kid with an RS256 alg: the key does not fit the algorithm.
      await refuses(url, await signWith(rsa, claims(sub), { kid: ec.kid }), "kid of another key type");
    });

    it("fetches a rotated-in kid and accepts it", async () => {
      const rotated = await makeKey("ES256", "ec-2");
      const sub = uniqueId("rotated");
      const token = await signWith(rotated, claims(sub));
      jwks.keys = [...jwks.keys, rotated.jwk];
      // Right after a fetch the cooldown holds: an unknown kid is not fetched yet …
      await sleep(COOLDOWN_MS + 100);
      const before = jwks.hits;
      await accepts(url, token, sub, "new kid after rotation");
      expect(jwks.hits - before, "one fetch for the new kid").to.equal(1);
      // … and once fetched it is served from the cache.
      await accepts(url, token, sub, "new kid, cached");
      expect(jwks.hits - before).to.equal(1);
    });

    it("a flood of made-up kids costs the provider at most one request per cooldown", async () => {
      await sleep(COOLDOWN_MS + 100);
      const before = jwks.hits;
      const sub = uniqueId("flood");
      const forged = (i: number) => signWith(stranger, claims(sub), { kid: `made-up-${i}` });
      // At once, then one after another, all within one cooldown.
      const burst = await Promise.all(Array.from({ length: 40 }, async (_, i) => tryConnect(url, { token: await forged(i) })));
      burst.forEach((o, i) => expectRefused(o, `made-up kid ${i}`));
      for (let i = 40; i < 60; i++) await refuses(url, await forged(i), `made-up kid ${i}`);
      expect(jwks.hits - before, "JWKS requests during the flood").to.equal(1);
      // Known kids keep working meanwhile, from the cache.
      const ok = uniqueId("ok");
      await accepts(url, await signWith(rsa, claims(ok)), ok, "valid token after the flood");
      expect(jwks.hits - before).to.equal(1);
    });
  });

  describe("a JWKS endpoint that is down, slow or answers garbage", () => {
    let key: TestKey;
    let jwks: JwksServer;
    let url: string;
    const env = () => ({
      JWT_JWKS_URL: jwks.url,
      JWT_ISSUER: ISSUER,
      // The cache goes stale quickly so every outage below is met by a fetch.
      JWKS_CACHE_MAX_AGE_MS: "1000",
      JWKS_COOLDOWN_MS: "1000",
      JWKS_TIMEOUT_MS: "300",
    });

    before(async () => {
      key = await makeKey("ES256", "k1");
      jwks = await JwksServer.start([key]);
      jwksServers.push(jwks);
      url = await start(env());
    });
    afterEach(() => {
      jwks.mode = "ok";
    });

    const token = async () => {
      const sub = uniqueId("u");
      return { sub, token: await signWith(key, { sub, iss: ISSUER }) };
    };

    for (const mode of ["down", "http500", "not-json", "no-keys", "html", "slow"] as const) {
      it(`${mode}: refuses new tokens, keeps serving, accepts again once the endpoint is back`, async () => {
        const t = await token();
        await accepts(url, t.token, t.sub, "before the outage");
        jwks.mode = mode;
        await sleep(1100); // the cached keys are stale now
        const started = Date.now();
        await refuses(url, t.token, `JWKS ${mode}`);
        if (mode === "slow") expect(Date.now() - started, "refused at the timeout, not after the slow answer").to.be.below(jwks.slowMs);
        // The server itself is fine.
        const health = await fetch(`${url}/healthz`);
        expect(health.status).to.equal(200);
        jwks.mode = "ok";
        await acceptedEventually(url, t.token, `after ${mode}`);
      });
    }

    it("while the endpoint is down, a stream of handshakes asks it about once a second, not once a token", async () => {
      const t = await token();
      await accepts(url, t.token, t.sub, "before the outage");
      jwks.mode = "down";
      await sleep(1100);
      const before = jwks.hits;
      const started = Date.now();
      let attempts = 0;
      while (Date.now() - started < 2500) {
        await refuses(url, t.token, "JWKS down");
        attempts++;
      }
      const seconds = (Date.now() - started) / 1000;
      const hits = jwks.hits - before;
      expect(attempts).to.be.above(10);
      expect(hits, `${hits} requests for ${attempts} handshakes in ${seconds.toFixed(1)} s`).to.be.at.most(Math.ceil(seconds) + 1);
    });

    it("to the verifier, an unreachable or failing endpoint is a refused token, not an unexpected error", async () => {
      const failing = await JwksServer.start([key]);
      jwksServers.push(failing);
      const t = await token();
      const jwksAt = (url: string) => ({ url, cooldownMs: 1000, cacheMaxAgeMs: 60_000, timeoutMs: 300 });
      for (const mode of ["down", "http500", "slow", "html"] as const) {
        failing.mode = mode;
        const verifier = createTokenVerifier({ mode: "jwt", jwks: jwksAt(failing.url), issuer: ISSUER });
        const err = await verifier.verify(t.token).then(() => null, (e: unknown) => e);
        expect(err, mode).to.be.instanceOf(InvalidToken);
      }
      await failing.close();
      const closed = createTokenVerifier({ mode: "jwt", jwks: jwksAt(failing.url) });
      expect(await closed.verify(t.token).then(() => null, (e: unknown) => e), "connection refused").to.be.instanceOf(InvalidToken);
    });

    it("an endpoint down from the start: refused, then accepted once it answers", async () => {
      const cold = await JwksServer.start([key]);
      jwksServers.push(cold);
      cold.mode = "down";
      const coldUrl = await start({ JWT_JWKS_URL: cold.url, JWT_ISSUER: ISSUER });
      const t = await token();
      await refuses(coldUrl, t.token, "never fetched, endpoint down");
      cold.mode = "ok";
      await acceptedEventually(coldUrl, t.token, "endpoint back");
    });
  });

  describe("JWT_PUBLIC_KEY (PEM)", () => {
    it("accepts RS256/PS256, ES256 and EdDSA tokens, each with its own key", async () => {
      for (const alg of ["RS256", "ES256", "EdDSA"] as const) {
        const key = await makeKey(alg, "ignored");
        const url = await start({ JWT_PUBLIC_KEY: key.publicPem });
        const sub = uniqueId(alg);
        await accepts(url, await signWith(key, { sub }, { kid: null }), sub, `${alg} PEM`);
        if (alg === "RS256") await accepts(url, await signWith(key, { sub }, { alg: "PS256" }), sub, "PS256 PEM");
      }
    });

    it("takes a PEM written with \\n escapes, as .env files do", async () => {
      const key = await makeKey("EdDSA", "x");
      const url = await start({ JWT_PUBLIC_KEY: key.publicPem.trim().replace(/\n/g, "\\n") });
      const sub = uniqueId("escaped");
      await accepts(url, await signWith(key, { sub }), sub, "escaped PEM");
    });

    describe("an RSA key with JWT_ISSUER and JWT_AUDIENCE refuses", () => {
      let key: TestKey;
      let url: string;
      before(async () => {
        key = await makeKey("RS256", "pem");
        url = await start({ JWT_PUBLIC_KEY: key.publicPem, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE });
      });

      it("nothing valid (control)", async () => {
        const sub = uniqueId("alice");
        await accepts(url, await signWith(key, claims(sub)), sub, "valid");
      });

      it("HS256 signed with the public key's text, in any spelling", async () => {
        const sub = uniqueId("mallory");
        for (const secret of [key.publicPem, key.publicPem.trim(), key.publicPem.replace(/\n/g, "\\n"), JSON.stringify(key.jwk)]) {
          await refuses(url, await signHs256(secret, claims(sub)), "HS256 with the PEM as secret");
        }
      });

      it("a token signed by another key, or with an algorithm the key does not have", async () => {
        const sub = uniqueId("mallory");
        await refuses(url, await signWith(await makeKey("RS256", "pem"), claims(sub)), "another RSA key");
        await refuses(url, await signWith(await makeKey("ES256", "pem"), claims(sub)), "an EC key");
        await refuses(url, await signWith(await makeKey("EdDSA", "pem"), claims(sub)), "an Ed25519 key");
      });

      it("alg none, wrong iss or aud, expired, nbf in the future, garbage", async () => {
        const sub = uniqueId("mallory");
        await refuses(url, `${b64url({ alg: "none" })}.${b64url({ ...claims(sub), exp: nowSec() + 60 })}.`, "alg none");
        await refuses(url, await signWith(key, { sub, iss: "other", aud: AUDIENCE }), "wrong iss");
        await refuses(url, await signWith(key, { sub, iss: ISSUER, aud: "other" }), "wrong aud");
        await refuses(url, await signWith(key, { ...claims(sub), exp: nowSec() - 1 }), "expired");
        await refuses(url, await signWith(key, { ...claims(sub), nbf: nowSec() + 600 }), "nbf in the future");
        for (const garbage of ["", "x", "a.b.c", "x".repeat(20_000), 42, null]) await refuses(url, garbage, "garbage");
      });
    });
  });
});
