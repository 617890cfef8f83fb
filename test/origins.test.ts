import { expect } from "chai";
import { io } from "socket.io-client";
import { ConfigError, loadConfig } from "../src/config";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/device";
import { startServer, TEST_SECRET, urlOf } from "./helpers/server";

const ALLOWED = "https://app.example.com";
const OTHER = "https://evil.example.net";

/** The first long-polling request of a handshake, as a browser on `origin` would make it. */
async function pollingHandshake(server: RunningTicks, origin?: string) {
  const res = await fetch(`${urlOf(server)}/socket.io/?EIO=4&transport=polling`, {
    headers: origin ? { origin } : {},
  });
  return { status: res.status, allowOrigin: res.headers.get("access-control-allow-origin"), body: await res.text() };
}

/** A WebSocket handshake carrying an Origin header; resolves "connected" or the connect_error message. */
function websocketFrom(server: RunningTicks, origin: string): Promise<string> {
  const socket = io(urlOf(server), {
    transports: ["websocket"],
    reconnection: false,
    auth: { userId: uniqueId("ws") },
    extraHeaders: { origin },
  });
  return new Promise((resolve) => {
    socket.once("connect", () => {
      socket.disconnect();
      resolve("connected");
    });
    socket.once("connect_error", (err) => {
      socket.disconnect();
      resolve(err.message);
    });
  });
}

describe("CORS_ORIGINS", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  describe("configuration", () => {
    const base = { AUTH_MODE: "dev" };
    it("takes a comma-separated list of origins, or *", () => {
      expect(loadConfig({ ...base, CORS_ORIGINS: `${ALLOWED}, http://localhost:5173` }).origins).to.deep.equal({
        allow: "list",
        origins: [ALLOWED, "http://localhost:5173"],
      });
      expect(loadConfig({ ...base, CORS_ORIGINS: "*" }).origins).to.deep.equal({ allow: "any" });
    });
    it("defaults to any origin in dev mode and to same-origin with JWT auth", () => {
      expect(loadConfig(base).origins).to.deep.equal({ allow: "any" });
      expect(loadConfig({ JWT_SECRET: TEST_SECRET }).origins).to.deep.equal({ allow: "same-origin" });
    });
    for (const bad of ["app.example.com", "https://app.example.com/chat", "ftp://files.example.com", ","]) {
      it(`refuses ${JSON.stringify(bad)} at start`, () => {
        expect(() => loadConfig({ ...base, CORS_ORIGINS: bad })).to.throw(ConfigError, /CORS_ORIGINS/);
      });
    }
  });

  describe("with an allowlist", () => {
    let server: RunningTicks;
    before(async () => {
      server = await startServer(db.url, { CORS_ORIGINS: ALLOWED });
    });
    after(() => server.stop());

    it("answers an allowed origin's long-polling handshake with its CORS header", async () => {
      const r = await pollingHandshake(server, ALLOWED);
      expect(r.status).to.equal(200);
      expect(r.allowOrigin).to.equal(ALLOWED);
    });
    it("refuses any other origin with 403 and a reason", async () => {
      const r = await pollingHandshake(server, OTHER);
      expect(r.status).to.equal(403);
      expect(r.allowOrigin).to.equal(null);
      expect(JSON.parse(r.body)).to.deep.equal({ code: 4, message: "origin not allowed" });
    });
    it("applies to the WebSocket handshake too", async () => {
      expect(await websocketFrom(server, ALLOWED)).to.equal("connected");
      expect(await websocketFrom(server, OTHER)).to.equal("websocket error");
    });
    it("lets clients that send no Origin (native apps, servers) and same-origin pages in", async () => {
      expect((await pollingHandshake(server)).status).to.equal(200);
      expect((await pollingHandshake(server, urlOf(server))).status).to.equal(200);
    });
  });

  describe("unset, with JWT auth", () => {
    let server: RunningTicks;
    before(async () => {
      server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET });
    });
    after(() => server.stop());

    it("allows same-origin and no-Origin requests only", async () => {
      expect((await pollingHandshake(server)).status).to.equal(200);
      expect((await pollingHandshake(server, urlOf(server))).status).to.equal(200);
      expect((await pollingHandshake(server, ALLOWED)).status).to.equal(403);
    });
  });

  describe("unset, in dev mode", () => {
    let server: RunningTicks;
    before(async () => {
      server = await startServer(db.url);
    });
    after(() => server.stop());

    it("allows any origin", async () => {
      const r = await pollingHandshake(server, OTHER);
      expect(r.status).to.equal(200);
      expect(r.allowOrigin).to.equal(OTHER);
    });
  });
});
