import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, SignJWT, type JWK, type JWTPayload } from "jose";

export type Alg = "RS256" | "PS256" | "ES256" | "EdDSA";

/** A signing key of the kind an identity provider holds, with its public halves. */
export type TestKey = { alg: Alg; kid: string; privateKey: KeyObject; publicPem: string; jwk: JWK };

export async function makeKey(alg: Alg, kid: string): Promise<TestKey> {
  const pair =
    alg === "ES256"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : alg === "EdDSA"
        ? generateKeyPairSync("ed25519")
        : generateKeyPairSync("rsa", { modulusLength: 2048 });
  const publicPem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
  const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey: pair.privateKey, publicPem, jwk };
}

export const nowSec = () => Math.floor(Date.now() / 1000);

/**
 * A token signed with `key`; claims default to an hour of validity. `header` overrides the
 * protected header (a different kid, or none).
 */
export function signWith(key: TestKey, claims: JWTPayload, header: { kid?: string | null; alg?: string } = {}): Promise<string> {
  const kid = header.kid === undefined ? key.kid : header.kid;
  return new SignJWT({ iat: nowSec(), exp: nowSec() + 3600, ...claims })
    .setProtectedHeader({ alg: header.alg ?? key.alg, typ: "JWT", ...(kid === null ? {} : { kid }) })
    .sign(key.privateKey);
}

/** HS256 with any text as the secret: how an algorithm-confusion attack signs with a public key. */
export function signHs256(secret: string, claims: JWTPayload, kid?: string): Promise<string> {
  return new SignJWT({ iat: nowSec(), exp: nowSec() + 3600, ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", ...(kid ? { kid } : {}) })
    .sign(new TextEncoder().encode(secret));
}

export type JwksMode =
  | "ok"
  /** The connection is cut without an answer. */
  | "down"
  | "http500"
  /** Answers, correctly, after `slowMs`. */
  | "slow"
  | "not-json"
  | "no-keys"
  | "html";

/**
 * A local JWKS endpoint, as Keycloak's `/realms/<realm>/protocol/openid-connect/certs`,
 * that counts its requests and can be made to fail in every way the tests need.
 */
export class JwksServer {
  keys: JWK[] = [];
  mode: JwksMode = "ok";
  slowMs = 2000;
  hits = 0;
  private server: Server | null = null;
  private port = 0;

  static async start(keys: TestKey[] = []): Promise<JwksServer> {
    const s = new JwksServer();
    s.keys = keys.map((k) => k.jwk);
    s.server = createServer((req, res) => {
      s.hits++;
      const send = (status: number, body: string, type = "application/json") => {
        if (res.destroyed) return;
        res.writeHead(status, { "content-type": type });
        res.end(body);
      };
      const jwks = JSON.stringify({ keys: s.keys });
      switch (s.mode) {
        case "ok":
          return send(200, jwks);
        case "down":
          return req.socket.destroy();
        case "http500":
          return send(500, '{"error":"internal"}');
        case "slow": {
          const timer = setTimeout(() => send(200, jwks), s.slowMs);
          res.on("close", () => clearTimeout(timer));
          return;
        }
        case "not-json":
          return send(200, '{"keys": [');
        case "no-keys":
          return send(200, JSON.stringify({ keys: "none", hello: 1 }));
        case "html":
          return send(200, "<html><body>Login</body></html>", "text/html");
      }
    });
    await new Promise<void>((resolve) => s.server!.listen(0, "127.0.0.1", resolve));
    s.port = (s.server.address() as AddressInfo).port;
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/realms/ticks/protocol/openid-connect/certs`;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
