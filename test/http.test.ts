import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, databaseExists, type TestDatabase } from "./helpers/database";
import { Device, uniqueId } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";
import { expectOk } from "./helpers/replies";

async function get(server: RunningTicks, path: string): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`${urlOf(server)}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

/** The value of an unlabelled counter in Prometheus text, or null when absent. */
function counter(text: string, name: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : null;
}

describe("HTTP endpoints", () => {
  const suite = useServerSuite();

  it("GET /healthz answers 200", async () => {
    const res = await get(suite.server, "/healthz");
    expect(res.status).to.equal(200);
  });

  it("GET /readyz answers 200 while the database answers", async () => {
    const res = await get(suite.server, "/readyz");
    expect(res.status).to.equal(200);
  });

  it("GET /metrics answers Prometheus text that counts stored messages", async () => {
    const first = await get(suite.server, "/metrics");
    expect(first.status).to.equal(200);
    expect(first.type).to.match(/^text\/plain/);
    expect(first.body).to.include("# TYPE ticks_messages_stored_total counter");
    const before = counter(first.body, "ticks_messages_stored_total");
    expect(before).to.be.a("number");

    const alice = await suite.device(uniqueId("alice")).connectSynced();
    const to = uniqueId("bob");
    for (const content of ["one", "two"]) {
      const reply = await alice.request("message:send", { clientMsgId: uuidv4(), to, content });
      expectOk(reply);
    }
    // A duplicate stores nothing, so it counts nothing.
    const clientMsgId = uuidv4();
    await alice.request("message:send", { clientMsgId, to, content: "three" });
    await alice.request("message:send", { clientMsgId, to, content: "three" });

    const after = counter((await get(suite.server, "/metrics")).body, "ticks_messages_stored_total");
    expect(after).to.equal(before! + 3);
  });

  it("GET /metrics lists no handles one by one, and still counts open files and sockets", async () => {
    const alice = await suite.device(uniqueId("alice")).connectSynced();
    const body = (await get(suite.server, "/metrics")).body;
    // Listing every handle on the loop at each scrape grows with the sockets (src/metrics.ts).
    for (const name of ["nodejs_active_handles", "nodejs_active_handles_total", "nodejs_active_resources"]) {
      expect(body).not.to.include(`# TYPE ${name} `);
    }
    expect(counter(body, "ticks_connected_sockets")).to.be.at.least(1);
    if (process.platform === "linux") {
      // The socket just opened is one of them: the count is read, not left at 0.
      expect(counter(body, "process_open_fds")).to.be.greaterThan(1);
      expect(counter(body, "process_max_fds")).to.be.greaterThan(0);
    }
    alice.close();
  });
});

describe("HTTP and sockets when the database goes away", () => {
  let db: TestDatabase;
  let server: RunningTicks | undefined;
  let alice: Device | undefined;

  after(async () => {
    alice?.close();
    await server?.stop();
    await db?.drop();
  });

  it("answers /readyz 503 and UNAVAILABLE (never ok), and keeps running", async () => {
    db = await createTestDatabase();
    server = await startServer(db.url);
    const aliceId = uniqueId("alice");
    const bobId = uniqueId("bob");
    alice = new Device(urlOf(server), { userId: aliceId });
    await alice.connectSynced();
    const good = await alice.request("message:send", { clientMsgId: uuidv4(), to: bobId, content: "before" });
    if (!good.ok) expect.fail(good.error.message);
    expect((await get(server, "/readyz")).status).to.equal(200);

    // The database disappears under the running server (its connections are terminated).
    await db.drop();
    expect(await databaseExists(db.name)).to.equal(false);

    const ready = await get(server, "/readyz");
    expect(ready.status).to.equal(503);

    const attempts = [
      { clientMsgId: uuidv4(), to: bobId, content: "lost?" },
      { clientMsgId: uuidv4(), conversationId: good.message.conversationId, content: "lost?" },
      // A retry of a stored message: the server cannot know, so it cannot answer ok either.
      { clientMsgId: good.message.clientMsgId, to: bobId, content: "before" },
    ];
    for (const payload of attempts) {
      const reply = await alice.request("message:send", payload);
      expect(reply, JSON.stringify(payload)).to.deep.include({ ok: false });
      if (reply.ok) continue;
      expect(reply.error.code).to.equal("UNAVAILABLE");
      expect(reply.error.message).to.be.a("string");
    }

    // Reads and other writes say UNAVAILABLE too, rather than an empty answer or INTERNAL.
    const others = [
      await alice.request("message:history", { conversationId: good.message.conversationId }),
      await alice.request("conversation:list", {}),
      await alice.request("message:read", { messageIds: [good.message.id] }),
      await alice.request("group:create", { title: "g", members: [bobId] }),
    ];
    expect(others.map((r) => (r.ok ? "ok" : r.error.code))).to.deep.equal([
      "UNAVAILABLE",
      "UNAVAILABLE",
      "UNAVAILABLE",
      "UNAVAILABLE",
    ]);

    // Still bad input is BAD_REQUEST: validation does not need the database.
    const bad = (await alice.raw("message:send", { to: bobId })) as { ok: boolean; error?: { code: string } };
    expect(bad.error?.code).to.equal("BAD_REQUEST");

    // The process (this one: the server runs in-process) keeps running and serving HTTP.
    expect(alice.socket.connected).to.equal(true);
    expect((await get(server, "/healthz")).status).to.equal(200);
    expect((await get(server, "/metrics")).status).to.equal(200);
    expect((await get(server, "/readyz")).status).to.equal(503);

    await server.stop();
    server = undefined;
  });
});
