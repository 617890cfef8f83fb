import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { Server, type Socket } from "socket.io";
import { TicksClient } from "../src/client/TicksClient";
import { next } from "./helpers/sdk";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { quiet, uniqueId, waitFor } from "./helpers/device";
import { mintToken, startServer, TEST_SECRET, urlOf } from "./helpers/server";

/**
 * The SDK's side of token refresh (auth:expiring → auth:refresh; auth:expired → reconnect
 * with a fresh token), against a stand-in Socket.IO server that speaks just those events, so
 * the client is checked on its own.
 */
describe("SDK token refresh", () => {
  let io: Server;
  let url: string;
  const handshakes: string[] = [];
  const refreshes: string[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    const http = createServer();
    io = new Server(http, { transports: ["websocket"] });
    io.use((socket, nextMw) => {
      const token = (socket.handshake.auth as { token?: string }).token ?? "";
      handshakes.push(token);
      nextMw(token.startsWith("token-") ? undefined : Object.assign(new Error("unauthorized"), { data: { code: "UNAUTHORIZED" } }));
    });
    io.on("connection", (socket) => {
      sockets.push(socket);
      socket.on("auth:refresh", (req: { token: string }, ack: (r: unknown) => void) => {
        refreshes.push(req.token);
        ack({ ok: true, expiresAt: "2030-01-01T00:00:00.000Z" });
      });
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  after(() => io.close());

  it("answers auth:expiring with auth:refresh, and reconnects with a fresh token after auth:expired", async () => {
    let n = 0;
    const client = new TicksClient({ url, getToken: () => `token-${++n}`, reconnectDelayMs: 50, reconnectDelayMaxMs: 100 });
    try {
      await client.connect();
      expect(handshakes).to.deep.equal(["token-1"]);

      const refreshed = next(client, "token");
      sockets.at(-1)!.emit("auth:expiring", { expiresAt: new Date().toISOString() });
      expect(await refreshed).to.deep.equal([{ expiresAt: "2030-01-01T00:00:00.000Z" }]);
      expect(refreshes).to.deep.equal(["token-2"]);

      // The server gives up on the token: it says so, then disconnects the socket.
      const back = next(client, "connected");
      const old = sockets.at(-1)!;
      old.emit("auth:expired", {});
      old.disconnect(true);
      await back;
      expect(handshakes).to.deep.equal(["token-1", "token-3"]);
    } finally {
      client.close();
    }
  });

  it("rejects connect() when the first handshake is refused, and does not retry", async () => {
    const before = handshakes.length;
    const client = new TicksClient({ url, getToken: () => "bad", reconnectDelayMs: 50 });
    try {
      let error: Error | undefined;
      await client.connect().catch((err: Error) => (error = err));
      expect(error?.message).to.equal("unauthorized");
      await quiet(); // nothing more comes: a refused first handshake is final
      expect(handshakes.length - before).to.equal(1);
    } finally {
      client.close();
    }
  });

  it("after having been connected, retries a refused handshake with fresh tokens", async () => {
    let n = 0;
    // token-1 passes; the next two are refused; then token-4 passes.
    const client = new TicksClient({
      url,
      getToken: () => (++n === 1 || n >= 4 ? `token-${n}` : `expired-${n}`),
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 100,
    });
    try {
      await client.connect();
      const back = next(client, "connected");
      sockets.at(-1)!.disconnect(true);
      await back;
      await waitFor(() => n === 4, "four handshakes");
      expect(client.connected).to.equal(true);
    } finally {
      client.close();
    }
  });
});

describe("SDK token refresh against a real server", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let server: RunningTicks;
  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET, TOKEN_REFRESH_WINDOW_MS: "1500" });
  });
  after(async () => {
    await server.stop();
    await db.drop();
  });

  it("refreshes each short-lived token before its exp and stays connected past it", async () => {
    const sub = uniqueId("tok");
    let minted = 0;
    const client = new TicksClient({
      url: urlOf(server),
      getToken: () => {
        minted++;
        return mintToken(sub, { expiresIn: "3s" });
      },
    });
    const disconnects: string[] = [];
    client.on("disconnected", (reason) => disconnects.push(reason));
    try {
      const synced = client.whenSynced();
      await client.connect();
      await synced;
      const [{ expiresAt }] = await next(client, "expiring");
      await next(client, "token");
      await waitFor(() => Date.now() > Date.parse(expiresAt) + 1000, "a second past the first token's exp");
      expect(disconnects).to.deep.equal([]);
      expect(client.connected).to.equal(true);
      expect(minted).to.be.at.least(2);
      expect(client.me).to.equal(sub);
    } finally {
      client.close();
    }
  });
});
