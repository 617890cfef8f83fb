import { expect } from "chai";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { startServer, TEST_SECRET, urlOf } from "./helpers/server";

/** What the server hands browsers: the SDK bundle always, the web page unless WEB_APP=off (`npm test` builds both first). */
describe("web assets", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  const get = async (server: RunningTicks, path: string) => {
    const res = await fetch(`${urlOf(server)}${path}`);
    return { status: res.status, type: res.headers.get("content-type"), cors: res.headers.get("access-control-allow-origin"), csp: res.headers.get("content-security-policy"), body: await res.text() };
  };

  it("serves the page, its script and config, and the SDK as an ES module any origin may import", async () => {
    const server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET, MAX_CONTENT_LENGTH: "1000" });
    try {
      const page = await get(server, "/");
      expect(page.status).to.equal(200);
      expect(page.type).to.match(/^text\/html/);
      expect(page.csp).to.match(/default-src 'self'/);
      expect(page.body).to.include('aria-label="Messages"');
      expect((await get(server, "/app.js")).status).to.equal(200);
      expect(JSON.parse((await get(server, "/app/config.json")).body)).to.deep.equal({ authMode: "jwt", maxContentLength: 1000 });
      const sdk = await get(server, "/sdk/ticks-client.js");
      expect(sdk.status).to.equal(200);
      expect(sdk.type).to.match(/^text\/javascript/);
      expect(sdk.cors).to.equal("*");
      expect(sdk.body).to.match(/export\s*\{[^}]*TicksClient/);
    } finally {
      await server.stop();
    }
  });

  it("with WEB_APP=off serves no page, but still the SDK", async () => {
    const server = await startServer(db.url, { WEB_APP: "off" });
    try {
      for (const path of ["/", "/app.js", "/app/config.json"]) expect((await get(server, path)).status, path).to.equal(404);
      expect((await get(server, "/sdk/ticks-client.js")).status).to.equal(200);
      expect((await get(server, "/healthz")).status).to.equal(200);
    } finally {
      await server.stop();
    }
  });
});
