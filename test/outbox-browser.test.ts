import { expect } from "chai";
import { Client } from "pg";
import type { BrowserContext, Page } from "playwright-core";
import type { RunningTicks } from "../src/main";
import { useChromium } from "./helpers/browser";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId, waitFor } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";

/**
 * The SDK's outbox in IndexedDB, in Chromium: once send() has resolved, closing the tab does
 * not lose the message, and opening it again sends it exactly once. (The scripts run in the
 * page, written as strings: the tests compile without the DOM types.)
 */
describe("SDK outbox in IndexedDB: a tab closed right after send() resolves", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  const chromium = useChromium();
  let pg: Client;

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url);
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  after(async () => {
    await pg?.end();
    await server?.stop();
    await db?.drop();
  });

  /** A tab on Ticks' origin with the SDK bundle imported (it stays usable if the server stops). */
  async function openTab(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${urlOf(server)}/`);
    await page.evaluate(`import("/sdk/ticks-client.js").then((sdk) => { globalThis.sdk = sdk; })`);
    return page;
  }

  /** Starts a client in the tab whose outbox is the IndexedDB database `outbox`. */
  const startClient = (page: Page, userId: string, outbox: string) =>
    page.evaluate(`(() => {
      const client = new sdk.TicksClient({
        url: location.origin, userId: ${JSON.stringify(userId)},
        storage: new sdk.IndexedDbOutboxStorage(${JSON.stringify(outbox)}),
        reconnectDelayMs: 100, reconnectDelayMaxMs: 500,
      });
      globalThis.client = client;
      globalThis.synced = client.whenSynced();
      client.connect().catch(() => undefined); // a server that is down is retried meanwhile
    })()`);

  /** Sends each text in turn, each after the previous send() resolved. */
  const sendAll = (page: Page, to: string, texts: string[]) =>
    page.evaluate(`(async () => {
      for (const text of ${JSON.stringify(texts)}) await client.send({ to: ${JSON.stringify(to)} }, text);
    })()`);

  /** Entries left in the outbox's IndexedDB, read beside the SDK through a connection of its own. */
  const stillQueued = (page: Page, outbox: string) =>
    page.evaluate(`new Promise((resolve, reject) => {
      const req = indexedDB.open(${JSON.stringify(outbox)});
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        const get = req.result.transaction("outbox", "readonly").objectStore("outbox").getAll();
        get.onsuccess = () => { req.result.close(); resolve(get.result.length); };
      };
    })`) as Promise<number>;

  /** How many times each text is stored for `from`. */
  async function storedCounts(from: string): Promise<Record<string, number>> {
    const { rows } = await pg.query<{ content: string; n: number }>(
      "SELECT content, count(*)::int AS n FROM messages WHERE from_user_id = $1 GROUP BY content",
      [from],
    );
    return Object.fromEntries(rows.map((r) => [r.content, r.n]));
  }

  /** Reopens the tab (same profile, same IndexedDB), connects, and waits until its outbox is empty. */
  async function reopenAndDrain(context: BrowserContext, userId: string, outbox: string): Promise<void> {
    const again = await openTab(context);
    await startClient(again, userId, outbox);
    await again.evaluate("synced");
    await waitFor(async () => (await stillQueued(again, outbox)) === 0, "the reopened tab's outbox drained", 20_000, 100);
  }

  it("while connected: every send is stored exactly once, in flight or not when the tab closed", async () => {
    const alice = uniqueId("alice");
    const outbox = `outbox-${alice}`;
    const texts = Array.from({ length: 5 }, (_, i) => `connected ${i}`);
    const context = await chromium.newContext();
    const tab = await openTab(context);
    await startClient(tab, alice, outbox);
    await tab.evaluate("synced");

    await sendAll(tab, uniqueId("bob"), texts);
    await tab.close(); // right away: the last sends may be unsent, or stored but unacknowledged

    await reopenAndDrain(context, alice, outbox);
    expect(await storedCounts(alice)).to.deep.equal(Object.fromEntries(texts.map((t) => [t, 1])));
  });

  // Last: it restarts the server.
  it("while the server is down: nothing can go out before the tab closes, and all of it goes out once after", async () => {
    const carol = uniqueId("carol");
    const outbox = `outbox-${carol}`;
    const texts = Array.from({ length: 3 }, (_, i) => `offline ${i}`);
    const context = await chromium.newContext();
    const tab = await openTab(context);
    const port = server.port;
    await server.stop();
    await startClient(tab, carol, outbox);

    await sendAll(tab, uniqueId("dave"), texts);
    await tab.close();

    server = await startServer(db.url, { PORT: String(port) });
    expect(await storedCounts(carol)).to.deep.equal({});
    await reopenAndDrain(context, carol, outbox);
    expect(await storedCounts(carol)).to.deep.equal(Object.fromEntries(texts.map((t) => [t, 1])));
  });
});
