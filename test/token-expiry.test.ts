/**
 * A token's `exp` on a live socket: auth:expiring, auth:refresh, auth:expired and the
 * server's disconnect. Tokens live a few seconds and the refresh window is short.
 */
import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { b64url } from "./helpers/handshake";
import { makeKey, nowSec, signHs256, signWith, type TestKey } from "./helpers/jwks";
import { startServer, TEST_SECRET, urlOf } from "./helpers/server";

const WINDOW_MS = 1500;

/** A token's `exp` in epoch ms, read from the token itself. */
const expOf = (token: string) =>
  (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { exp: number }).exp * 1000;

type Timed = { event: string; args: unknown[]; at: number };

/** A device that also notes when each event and the disconnect arrived. */
function watch(device: Device) {
  const seen: Timed[] = [];
  let disconnect: { reason: string; at: number } | null = null;
  device.socket.onAny((event, ...args) => seen.push({ event, args, at: Date.now() }));
  device.socket.on("disconnect", (reason) => (disconnect = { reason, at: Date.now() }));
  return {
    seen,
    get disconnect() {
      return disconnect as { reason: string; at: number } | null;
    },
    of: (event: string) => seen.filter((e) => e.event === event),
  };
}

describe("token expiry on live sockets", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let server: RunningTicks;
  let url: string;
  let key: TestKey;
  const devices: Device[] = [];

  /** A token for `sub` that expires `seconds` from now (whole seconds, as `exp` is). */
  const tokenFor = (sub: string, seconds: number | null) =>
    signWith(key, { sub, exp: seconds === null ? undefined : nowSec() + seconds });
  const connect = async (sub: string, token: string) => {
    const device = new Device(url, { userId: sub, token });
    devices.push(device);
    const watcher = watch(device);
    await device.connectSynced();
    return { device, watcher };
  };

  before(async () => {
    db = await createTestDatabase();
    key = await makeKey("ES256", "k");
    server = await startServer(db.url, {
      AUTH_MODE: "jwt",
      JWT_PUBLIC_KEY: key.publicPem,
      TOKEN_REFRESH_WINDOW_MS: String(WINDOW_MS),
    });
    url = urlOf(server);
  });
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  after(async () => {
    await server.stop();
    await db.drop();
  });

  it("unrefreshed: auth:expiring before exp, then auth:expired and a server disconnect at exp", async () => {
    const sub = uniqueId("alice");
    const token = await tokenFor(sub, 3);
    const exp = expOf(token);
    const { watcher } = await connect(sub, token);
    await waitFor(() => watcher.disconnect !== null, "the server's disconnect", 10_000);
    const [expiring] = watcher.of("auth:expiring");
    const [expired] = watcher.of("auth:expired");
    expect(expiring, "auth:expiring").to.not.equal(undefined);
    expect(expiring!.args[0]).to.deep.equal({ expiresAt: new Date(exp).toISOString() });
    expect(expiring!.at, "auth:expiring within the window").to.be.at.least(exp - WINDOW_MS - 50).and.below(exp);
    expect(expired, "auth:expired").to.not.equal(undefined);
    expect(expired!.args[0]).to.deep.equal({});
    expect(expired!.at, "auth:expired at exp").to.be.at.least(exp - 50);
    expect(watcher.seen.indexOf(expiring!)).to.be.below(watcher.seen.indexOf(expired!));
    expect(watcher.disconnect!.reason).to.equal("io server disconnect");
    expect(watcher.disconnect!.at).to.be.at.least(expired!.at);
    expect(server.tokens.tracked).to.equal(0);
  });

  it("refreshed: stays connected and usable past the first exp, and is warned again for the new one", async () => {
    const sub = uniqueId("bob");
    const first = await tokenFor(sub, 2);
    const firstExp = expOf(first);
    const { device, watcher } = await connect(sub, first);
    await waitFor(() => watcher.of("auth:expiring").length === 1, "auth:expiring");
    const second = await tokenFor(sub, 5);
    const reply = await device.request("auth:refresh", { token: second });
    if (!reply.ok) expect.fail(`refresh refused: ${reply.error.code}`);
    const secondExp = Date.parse(reply.expiresAt!);
    expect(secondExp).to.be.above(firstExp);
    await waitFor(() => Date.now() > firstExp + 500, "past the first exp");
    expect(device.socket.connected, "connected past the first exp").to.equal(true);
    expect(watcher.of("auth:expired")).to.have.length(0);
    const sent = await device.request("message:send", { clientMsgId: uuidv4(), to: uniqueId("x"), content: "still here" });
    expect(sent.ok).to.equal(true);
    // The new token is warned about and expires in its turn.
    await waitFor(() => watcher.of("auth:expiring").length === 2, "auth:expiring for the new token");
    expect(watcher.of("auth:expiring")[1]!.args[0]).to.deep.equal({ expiresAt: new Date(secondExp).toISOString() });
    await waitFor(() => watcher.disconnect !== null, "disconnect at the new exp", 10_000);
    expect(watcher.disconnect!.at).to.be.at.least(secondExp - 50);
  });

  it("a refresh naming another user is FORBIDDEN and changes nothing", async () => {
    const sub = uniqueId("carol");
    const token = await tokenFor(sub, 3);
    const exp = expOf(token);
    const { device, watcher } = await connect(sub, token);
    const reply = await device.request("auth:refresh", { token: await tokenFor(uniqueId("mallory"), 3600) });
    expect(reply).to.deep.include({ ok: false });
    if (reply.ok) return;
    expect(reply.error.code).to.equal("FORBIDDEN");
    // Still the same user …
    const sent = await device.request("message:send", { clientMsgId: uuidv4(), to: uniqueId("x"), content: "me" });
    if (!sent.ok) expect.fail(sent.error.code);
    expect(sent.message.from).to.equal(sub);
    // … and still the old expiry.
    await waitFor(() => watcher.disconnect !== null, "disconnect at the original exp", 10_000);
    expect(watcher.of("auth:expired")).to.have.length(1);
    expect(watcher.disconnect!.at).to.be.at.least(exp - 50).and.below(exp + 2000);
  });

  it("an invalid refresh is UNAUTHORIZED and changes nothing", async () => {
    const sub = uniqueId("dave");
    const token = await tokenFor(sub, 3);
    const exp = expOf(token);
    const { device, watcher } = await connect(sub, token);
    const other = await makeKey("ES256", "k");
    const invalid: [string, string][] = [
      ["garbage", "not-a-token"],
      ["empty", ""],
      ["expired", await signWith(key, { sub, iat: nowSec() - 100, exp: nowSec() - 10 })],
      ["nbf in the future", await signWith(key, { sub, nbf: nowSec() + 600 })],
      ["another key", await signWith(other, { sub })],
      ["HS256 with the public key", await signHs256(key.publicPem, { sub })],
      ["HS256 with the old test secret", await signHs256(TEST_SECRET, { sub })],
      ["alg none", `${b64url({ alg: "none" })}.${b64url({ sub, exp: nowSec() + 3600 })}.`],
    ];
    for (const [what, token] of invalid) {
      const reply = await device.request("auth:refresh", { token });
      expect(reply.ok, what).to.equal(false);
      if (!reply.ok) expect(reply.error.code, what).to.equal("UNAUTHORIZED");
    }
    // Not a token at all: a malformed request.
    const bad = (await device.raw("auth:refresh", { token: 42 })) as { ok: boolean; error?: { code: string } };
    expect(bad.error?.code).to.equal("BAD_REQUEST");
    expect(device.socket.connected).to.equal(true);
    await waitFor(() => watcher.disconnect !== null, "disconnect at the original exp", 10_000);
    expect(watcher.disconnect!.reason).to.equal("io server disconnect");
    expect(watcher.disconnect!.at).to.be.at.least(exp - 50).and.below(exp + 2000);
  });

  it("a token without exp sets no timer; refreshing to one without exp clears the timer", async () => {
    const before = server.tokens.tracked;
    const sub = uniqueId("erin");
    const { watcher } = await connect(sub, await tokenFor(sub, null));
    expect(server.tokens.tracked).to.equal(before);
    const frank = uniqueId("frank");
    const { device, watcher: frankWatch } = await connect(frank, await tokenFor(frank, 2));
    expect(server.tokens.tracked).to.equal(before + 1);
    const reply = await device.request("auth:refresh", { token: await tokenFor(frank, null) });
    expect(reply).to.deep.equal({ ok: true, expiresAt: null });
    expect(server.tokens.tracked).to.equal(before);
    await quiet(2500); // past frank's first exp
    expect(device.socket.connected).to.equal(true);
    expect([...watcher.seen, ...frankWatch.seen].filter((e) => e.event.startsWith("auth:"))).to.deep.equal([]);
  });

  it("a token already inside the window is warned about at once", async () => {
    const sub = uniqueId("gina");
    const { watcher } = await connect(sub, await tokenFor(sub, 1));
    await waitFor(() => watcher.of("auth:expiring").length === 1, "auth:expiring");
    await waitFor(() => watcher.disconnect !== null, "disconnect");
  });

  it("a socket that leaves before exp leaves no timer behind", async () => {
    const before = server.tokens.tracked;
    const sub = uniqueId("hank");
    const { device } = await connect(sub, await tokenFor(sub, 60));
    expect(server.tokens.tracked).to.equal(before + 1);
    device.close();
    await waitFor(() => server.tokens.tracked === before, "the deadline dropped");
  });
});

describe("token expiry in dev mode and with HS256", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  it("dev mode: no expiry events, auth:refresh is a BAD_REQUEST", async () => {
    const server = await startServer(db.url, { AUTH_MODE: "dev", TOKEN_REFRESH_WINDOW_MS: "100000" });
    const device = new Device(urlOf(server), { userId: uniqueId("dev") });
    try {
      await device.connectSynced();
      const reply = (await device.raw("auth:refresh", { token: "x" })) as { ok: boolean; error?: { code: string } };
      expect(reply.error?.code).to.equal("BAD_REQUEST");
      await quiet(300);
      expect(device.events.filter((e) => e.event.startsWith("auth:"))).to.deep.equal([]);
      expect(server.tokens.tracked).to.equal(0);
    } finally {
      device.close();
      await server.stop();
    }
  });

  it("HS256 (JWT_SECRET): the same expiry and refresh", async () => {
    const server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET, TOKEN_REFRESH_WINDOW_MS: "1000" });
    const sub = uniqueId("hs");
    const device = new Device(urlOf(server), { userId: sub, token: await signHs256(TEST_SECRET, { sub, exp: nowSec() + 2 }) });
    try {
      const watcher = watch(device);
      await device.connectSynced();
      await waitFor(() => watcher.of("auth:expiring").length === 1, "auth:expiring");
      const reply = await device.request("auth:refresh", { token: await signHs256(TEST_SECRET, { sub, exp: nowSec() + 3600 }) });
      expect(reply.ok).to.equal(true);
      await quiet(2000);
      expect(device.socket.connected).to.equal(true);
      expect(watcher.of("auth:expired")).to.have.length(0);
    } finally {
      device.close();
      await server.stop();
    }
  });
});
