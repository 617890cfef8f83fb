import { expect } from "chai";
import { SignJWT, type JWTPayload } from "jose";
import { Client } from "pg";
import type { Socket } from "socket.io-client";
import { v4 as uuidv4 } from "uuid";
import { ConfigError, loadConfig } from "../src/config";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId } from "./helpers/device";
import { b64url, tryConnect, type HandshakeOutcome } from "./helpers/handshake";
import { mintToken, startServer, TEST_SECRET, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";

const OTHER_SECRET = "another-secret-that-is-also-32-chars-or-more";
const nowSec = () => Math.floor(Date.now() / 1000);

/** Signs any claims with any HMAC algorithm and secret; defaults: HS256, TEST_SECRET, valid for an hour. */
function sign(claims: JWTPayload, options: { alg?: string; secret?: string } = {}): Promise<string> {
  return new SignJWT({ iat: nowSec(), exp: nowSec() + 3600, ...claims })
    .setProtectedHeader({ alg: options.alg ?? "HS256", typ: "JWT" })
    .sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

function expectRefused(outcome: HandshakeOutcome, what: string): void {
  if (outcome.connected) {
    outcome.socket.disconnect();
    expect.fail(`${what}: the handshake was accepted`);
  }
  expect(outcome.error.message, what).to.equal("unauthorized");
  expect(outcome.error.data, what).to.deep.equal({ code: "UNAUTHORIZED" });
}

function expectBadDevice(outcome: HandshakeOutcome, what: string): void {
  if (outcome.connected) {
    outcome.socket.disconnect();
    expect.fail(`${what}: the handshake was accepted`);
  }
  expect(outcome.error.message, what).to.equal("invalid deviceId");
  expect(outcome.error.data, what).to.deep.include({ code: "BAD_REQUEST" });
}

describe("authentication", () => {
  let db: TestDatabase;
  let pg: Client;
  const sockets: Socket[] = [];
  const devices: Device[] = [];

  const userRows = async (userId: string): Promise<number> =>
    (await pg.query("SELECT count(*)::int AS n FROM users WHERE user_id = $1", [userId])).rows[0].n;

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => {
    sockets.splice(0).forEach((s) => s.disconnect());
    devices.splice(0).forEach((d) => d.close());
  });
  after(async () => {
    await pg.end();
    await db.drop();
  });

  describe("JWT mode", () => {
    let server: RunningTicks;
    let url: string;

    before(async () => {
      server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET });
      url = urlOf(server);
    });
    after(() => server.stop());

    const connects = async (auth: Record<string, unknown>, what: string): Promise<Socket> => {
      const outcome = await tryConnect(url, auth);
      if (!outcome.connected) expect.fail(`${what}: refused with ${outcome.error.message}`);
      sockets.push(outcome.socket);
      return outcome.socket;
    };

    it("accepts a valid HS256 token and acts as its sub", async () => {
      const sub = uniqueId("alice");
      const bob = uniqueId("bob");
      const alice = new Device(url, { userId: sub, token: await mintToken(sub) });
      devices.push(alice);
      await alice.connectSynced();
      const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to: bob, content: "signed" });
      if (!reply.ok) expect.fail(`send refused: ${reply.error.code} ${reply.error.message}`);
      expect(reply.message.from).to.equal(sub);
      const { rows } = await pg.query("SELECT from_user_id, to_user_id FROM messages WHERE message_id = $1", [
        reply.message.id,
      ]);
      expect(rows).to.deep.equal([{ from_user_id: sub, to_user_id: bob }]);
      expect(await userRows(sub)).to.equal(1);
    });

    it("accepts a valid token with a valid deviceId", async () => {
      const sub = uniqueId("alice");
      const socket = await connects({ token: await mintToken(sub), deviceId: "phone-1.a_b" }, "deviceId");
      expect(socket.connected).to.equal(true);
    });

    it("ignores auth.userId next to a valid token: the token's sub acts", async () => {
      const sub = uniqueId("alice");
      const forged = uniqueId("mallory");
      const socket = await connects({ token: await mintToken(sub), userId: forged }, "token + userId");
      const reply = (await socket
        .timeout(10_000)
        .emitWithAck("message:send", { clientMsgId: uuidv4(), to: uniqueId("bob"), content: "who" })) as {
        ok: boolean;
        message?: { from: string };
      };
      expectOk(reply);
      expect(reply.message?.from).to.equal(sub);
      expect(await userRows(forged)).to.equal(0);
      const { rows } = await pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [forged]);
      expect(rows[0].n).to.equal(0);
    });

    describe("refuses with connect_error unauthorized / UNAUTHORIZED", () => {
      it("no auth at all, and an empty auth object", async () => {
        const bare = await tryConnect(url, {});
        expectRefused(bare, "empty auth");
        expectRefused(await tryConnect(url, { deviceId: "phone" }), "only a deviceId");
      });

      it("a token that is not a string", async () => {
        for (const token of [42, null, true, { sub: "alice" }, ["a.b.c"], ""]) {
          expectRefused(await tryConnect(url, { token }), `token ${JSON.stringify(token)}`);
        }
      });

      it("a garbage token", async () => {
        for (const token of ["garbage", "a.b.c", "....", `${b64url({ alg: "HS256" })}.${b64url({ sub: "x" })}.bad`]) {
          expectRefused(await tryConnect(url, { token }), `token ${token}`);
        }
      });

      it("a token signed with another secret", async () => {
        const sub = uniqueId("alice");
        expectRefused(await tryConnect(url, { token: await sign({ sub }, { secret: OTHER_SECRET }) }), "other secret");
        expect(await userRows(sub)).to.equal(0);
      });

      it("an expired token", async () => {
        const sub = uniqueId("alice");
        const token = await sign({ sub, iat: nowSec() - 7200, exp: nowSec() - 60 });
        expectRefused(await tryConnect(url, { token }), "expired");
        expect(await userRows(sub)).to.equal(0);
      });

      it("a token whose nbf is in the future", async () => {
        const sub = uniqueId("alice");
        const token = await sign({ sub, nbf: nowSec() + 600 });
        expectRefused(await tryConnect(url, { token }), "nbf in the future");
        expect(await userRows(sub)).to.equal(0);
      });

      it("an alg:none token", async () => {
        const sub = uniqueId("alice");
        const payload = b64url({ sub, iat: nowSec(), exp: nowSec() + 3600 });
        for (const header of [{ alg: "none" }, { alg: "none", typ: "JWT" }, { alg: "None" }]) {
          const token = `${b64url(header)}.${payload}.`;
          expectRefused(await tryConnect(url, { token }), `alg ${header.alg}`);
        }
        expect(await userRows(sub)).to.equal(0);
      });

      it("an HS512 (or HS384) token signed with the right secret: the algorithm is pinned to HS256", async () => {
        const sub = uniqueId("alice");
        expectRefused(await tryConnect(url, { token: await sign({ sub }, { alg: "HS512" }) }), "HS512");
        expectRefused(await tryConnect(url, { token: await mintToken(sub, { alg: "HS384" }) }), "HS384");
        expect(await userRows(sub)).to.equal(0);
      });

      it("a token whose sub is not a valid user id", async () => {
        const subs: unknown[] = ["has space", "a".repeat(65), "", "emoji😀", "slash/ed", "new\nline"];
        for (const sub of subs) {
          expectRefused(await tryConnect(url, { token: await sign({ sub: sub as string }) }), `sub ${JSON.stringify(sub)}`);
        }
        // No sub at all, and a sub that is not a string.
        expectRefused(await tryConnect(url, { token: await sign({}) }), "no sub");
        expectRefused(await tryConnect(url, { token: await sign({ sub: 42 as unknown as string }) }), "numeric sub");
        // The boundary: 64 characters is still a user id.
        const longest = `${uniqueId("u")}-`.padEnd(64, "x");
        const socket = await connects({ token: await sign({ sub: longest }) }, "64-char sub");
        expect(socket.connected).to.equal(true);
      });

      it("auth.userId without a token (a dev-only field)", async () => {
        const userId = uniqueId("alice");
        expectRefused(await tryConnect(url, { userId }), "userId only");
        expectRefused(await tryConnect(url, { userId, deviceId: "phone" }), "userId + deviceId");
        expect(await userRows(userId)).to.equal(0);
      });

      it("a bad token next to a bad deviceId: the token problem is all it says", async () => {
        const sub = uniqueId("alice");
        const expired = await sign({ sub, iat: nowSec() - 7200, exp: nowSec() - 60 });
        for (const token of ["garbage", expired, await sign({ sub }, { secret: OTHER_SECRET })]) {
          expectRefused(await tryConnect(url, { token, deviceId: "has space" }), "bad token + bad deviceId");
        }
        expectRefused(await tryConnect(url, { deviceId: 42 }), "no token + bad deviceId");
        expect(await userRows(sub)).to.equal(0);
      });
    });

    it("refuses a malformed deviceId next to a valid token with its own reason: invalid deviceId / BAD_REQUEST", async () => {
      const sub = uniqueId("alice");
      const token = await mintToken(sub);
      for (const deviceId of ["", "has space", "d".repeat(65), "phone@home", "x/y", 42, null, { id: "x" }]) {
        expectBadDevice(await tryConnect(url, { token, deviceId }), `deviceId ${JSON.stringify(deviceId)}`);
      }
      expect(await userRows(sub)).to.equal(0);
      // 64 characters is the longest deviceId.
      const socket = await connects({ token, deviceId: "d".repeat(64) }, "64-char deviceId");
      expect(socket.connected).to.equal(true);
    });

    it("still serves valid handshakes after all the refusals", async () => {
      const sub = uniqueId("alice");
      const socket = await connects({ token: await mintToken(sub) }, "after refusals");
      const reply = (await socket
        .timeout(10_000)
        .emitWithAck("message:send", { clientMsgId: uuidv4(), to: uniqueId("bob"), content: "still here" })) as {
        ok: boolean;
      };
      expectOk(reply);
    });
  });

  describe("dev mode", () => {
    let server: RunningTicks;
    let url: string;

    before(async () => {
      server = await startServer(db.url, { AUTH_MODE: "dev" });
      url = urlOf(server);
    });
    after(() => server.stop());

    it("accepts a valid auth.userId and acts as it", async () => {
      const userId = uniqueId("alice");
      const alice = new Device(url, { userId });
      devices.push(alice);
      await alice.connectSynced();
      const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to: uniqueId("bob"), content: "dev" });
      if (!reply.ok) expect.fail(reply.error.message);
      expect(reply.message.from).to.equal(userId);
    });

    it("refuses a missing or invalid userId", async () => {
      expectRefused(await tryConnect(url, {}), "no userId");
      expectRefused(await tryConnect(url, { deviceId: "phone" }), "only a deviceId");
      for (const userId of ["", "has space", "u".repeat(65), "emoji😀", "a/b", 42, null, ["alice"], { id: "alice" }]) {
        expectRefused(await tryConnect(url, { userId }), `userId ${JSON.stringify(userId)}`);
      }
    });

    it("refuses a bad deviceId next to a valid userId as invalid deviceId; next to a bad one, as unauthorized", async () => {
      const userId = uniqueId("alice");
      for (const deviceId of ["", "has space", "d".repeat(65), 7]) {
        expectBadDevice(await tryConnect(url, { userId, deviceId }), `deviceId ${JSON.stringify(deviceId)}`);
        expectRefused(await tryConnect(url, { userId: "has space", deviceId }), `bad userId, deviceId ${JSON.stringify(deviceId)}`);
      }
      expect(await userRows(userId)).to.equal(0);
    });
  });
});

describe("configuration (loadConfig)", () => {
  const base = { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/ticks" };
  const configError = (env: Record<string, string>): ConfigError => {
    try {
      loadConfig(env);
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      return err as ConfigError;
    }
    return expect.fail(`loadConfig accepted ${JSON.stringify(env)}`);
  };

  it("refuses AUTH_MODE=dev with NODE_ENV=production", () => {
    const err = configError({ ...base, AUTH_MODE: "dev", NODE_ENV: "production" });
    expect(err.message).to.include("AUTH_MODE");
    // Even with a secret configured, dev mode stays refused in production.
    configError({ ...base, AUTH_MODE: "dev", NODE_ENV: "production", JWT_SECRET: TEST_SECRET });
    // Without a secret the default mode is dev, refused in production too.
    configError({ ...base, NODE_ENV: "production" });
  });

  it("accepts production with a JWT secret, defaulting to jwt mode", () => {
    const config = loadConfig({ ...base, NODE_ENV: "production", JWT_SECRET: TEST_SECRET });
    expect(config.auth).to.deep.equal({ mode: "jwt", secret: TEST_SECRET });
  });

  it("refuses a JWT_SECRET shorter than 32 characters", () => {
    const err = configError({ ...base, JWT_SECRET: "short-secret" });
    expect(err.message).to.include("JWT_SECRET");
    configError({ ...base, AUTH_MODE: "jwt", JWT_SECRET: "x".repeat(31) });
    expect(loadConfig({ ...base, JWT_SECRET: "x".repeat(32) }).auth).to.deep.equal({ mode: "jwt", secret: "x".repeat(32) });
  });

  it("refuses AUTH_MODE=jwt without a secret, and an unknown AUTH_MODE", () => {
    expect(configError({ ...base, AUTH_MODE: "jwt" }).message).to.include("JWT_SECRET");
    expect(configError({ ...base, AUTH_MODE: "none" }).message).to.include("AUTH_MODE");
  });

  it("treats empty variables as unset", () => {
    const config = loadConfig({
      ...base,
      PORT: "",
      HOST: "",
      JWT_SECRET: "",
      AUTH_MODE: "",
      NODE_ENV: "",
      MESSAGE_TTL_DAYS: "",
      MAX_CONTENT_LENGTH: "",
      REDIS_URL: "",
      LOG_LEVEL: "",
    });
    expect(config.port).to.equal(3000);
    expect(config.host).to.equal("0.0.0.0");
    // An empty NODE_ENV is not production: dev mode is accepted.
    expect(config.auth).to.deep.equal({ mode: "dev" });
    expect(config.messageTtlMs).to.equal(30 * 24 * 3600 * 1000);
    expect(config.maxContentLength).to.equal(4096);
    expect(config.redis).to.equal(null);
    expect(config.logLevel).to.equal("info");
    // An empty DATABASE_URL means the embedded database, not an invalid URL.
    expect(loadConfig({ DATABASE_URL: "" }).database.kind).to.equal("pglite");
    // An empty NODE_ENV is not production, and an empty JWT_SECRET is no secret.
    configError({ ...base, AUTH_MODE: "jwt", JWT_SECRET: "" });
  });

  it("errors clearly on a bad PORT", () => {
    for (const PORT of ["abc", "70000", "-1", "3000.5", "80 80"]) {
      const err = configError({ ...base, PORT });
      expect(err.message, `PORT=${PORT}`).to.include("PORT");
    }
    expect(loadConfig({ ...base, PORT: "8080" }).port).to.equal(8080);
  });

  it("errors clearly on a bad MESSAGE_TTL_DAYS", () => {
    for (const MESSAGE_TTL_DAYS of ["abc", "0", "-1", "30days", "1e9"]) {
      const err = configError({ ...base, MESSAGE_TTL_DAYS });
      expect(err.message, `MESSAGE_TTL_DAYS=${MESSAGE_TTL_DAYS}`).to.include("MESSAGE_TTL_DAYS");
    }
  });

  it("accepts a decimal MESSAGE_TTL_DAYS", () => {
    expect(loadConfig({ ...base, MESSAGE_TTL_DAYS: "0.5" }).messageTtlMs).to.equal(12 * 3600 * 1000);
    expect(loadConfig({ ...base, MESSAGE_TTL_DAYS: "1.25" }).messageTtlMs).to.equal(30 * 3600 * 1000);
  });

  it("gives a message expiresAt = createdAt + a decimal MESSAGE_TTL_DAYS, in the database too", async () => {
    const db = await createTestDatabase();
    const server = await startServer(db.url, { MESSAGE_TTL_DAYS: "0.5" });
    const alice = new Device(urlOf(server), { userId: uniqueId("alice") });
    const pg = new Client({ connectionString: db.url });
    try {
      await pg.connect();
      await alice.connectSynced();
      const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to: uniqueId("bob"), content: "brief" });
      if (!reply.ok) expect.fail(reply.error.message);
      expect(Date.parse(reply.message.expiresAt) - Date.parse(reply.message.createdAt)).to.equal(12 * 3600 * 1000);
      const { rows } = await pg.query("SELECT created_at, expires_at FROM messages WHERE message_id = $1", [
        reply.message.id,
      ]);
      expect(rows[0].expires_at.getTime() - rows[0].created_at.getTime()).to.equal(12 * 3600 * 1000);
    } finally {
      alice.close();
      await pg.end();
      await server.stop();
      await db.drop();
    }
  });
});
