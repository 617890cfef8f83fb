import { expect } from "chai";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";
import { clientSocket } from "./helpers/socket";

type Outcome = { connected: true; transport: string } | { connected: false; message: string; type?: string; description?: unknown };

/** One connection attempt with socket.io-client's own defaults but the given transports. */
function tryTransports(url: string, transports?: ("polling" | "websocket")[]): Promise<Outcome> {
  // Without `transports`: socket.io-client's default, long-polling first, then the upgrade.
  const socket = clientSocket(url, { userId: uniqueId("t") }, { transports: transports ?? ["polling", "websocket"] });
  return new Promise((resolve) => {
    socket.once("connect", () => {
      resolve({ connected: true, transport: socket.io.engine.transport.name });
      socket.disconnect();
    });
    socket.once("connect_error", (err: Error & { type?: string; description?: unknown }) => {
      resolve({ connected: false, message: err.message, type: err.type, description: err.description });
      socket.disconnect();
    });
    socket.connect();
  });
}

/** What docs/protocol.md ("Transports") and docs/cluster.md say a client sees. */
describe("transports: one node takes long-polling, a clustered node only WebSocket", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let single: RunningTicks;
  let clustered: RunningTicks;

  before(async () => {
    db = await createTestDatabase();
    single = await startServer(db.url);
    clustered = await startServer(db.url, { REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: uniqueId("transports") });
  });
  after(async () => {
    await clustered?.stop();
    await single?.stop();
    await db?.drop();
  });

  it("one node: the default options connect (long-polling first, then the upgrade)", async () => {
    expect(await tryTransports(urlOf(single))).to.deep.include({ connected: true });
    expect(await tryTransports(urlOf(single), ["polling"])).to.deep.equal({ connected: true, transport: "polling" });
  });

  it("a clustered node: long-polling fails as xhr poll error (HTTP 400 Transport unknown); WebSocket connects", async () => {
    expect(await tryTransports(urlOf(clustered))).to.deep.equal({
      connected: false,
      message: "xhr poll error",
      type: "TransportError",
      description: 400,
    });
    const res = await fetch(`${urlOf(clustered)}/socket.io/?EIO=4&transport=polling`);
    expect(res.status).to.equal(400);
    expect(await res.json()).to.deep.equal({ code: 0, message: "Transport unknown" });
    expect(await tryTransports(urlOf(clustered), ["websocket"])).to.deep.equal({ connected: true, transport: "websocket" });
  });
});
