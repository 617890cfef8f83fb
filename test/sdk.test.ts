import { expect } from "chai";
import { Client } from "pg";
import { ContentTooLargeError } from "../src/client/limits";
import { OutboxStorageError } from "../src/client/Outbox";
import { MemoryOutboxStorage } from "../src/client/OutboxStorage";
import type { TicksClient } from "../src/client/TicksClient";
import type { MessageStatus } from "../src/client/StatusTracker";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId } from "./helpers/device";
import { freePort, spawnNode, type NodeProcess } from "./helpers/processes";
import { next, record, SdkClients, waitFor } from "./helpers/sdk";
import { mintToken, startServer, TEST_SECRET, urlOf } from "./helpers/server";

/** What a promise rejects with; the test fails if it resolves. */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection, got a value");
}

describe("SDK (TicksClient) against a real server", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  let pg: Client;
  const clients = new SdkClients();
  const devices: Device[] = [];

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url);
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => {
    clients.closeAll();
    devices.splice(0).forEach((d) => d.close());
  });
  after(async () => {
    await pg.end();
    await server.stop();
    await db.drop();
  });

  const stored = async (from: string) =>
    (
      await pg.query<{ client_msg_id: string; content: string; seq: string }>(
        "SELECT client_msg_id, content, seq FROM messages WHERE from_user_id = $1 ORDER BY seq",
        [from],
      )
    ).rows;

  it("send() resolves a local message once the outbox stores it; its status goes pending → sent → delivered → read", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const a = await clients.connected(urlOf(server), { userId: alice });
    const seen = record(a, "status");
    const local = await a.send({ to: bob }, "hello");
    expect(local).to.include({ status: "pending", content: "hello", to: bob, from: alice });
    expect(local.clientMsgId).to.match(/^[0-9a-f-]{36}$/);
    const [sent] = await next(a, "status", (c) => c.clientMsgId === local.clientMsgId && c.status === "sent");

    const delivered = next(a, "status", (c) => c.messageId === sent.messageId && c.status === "delivered");
    const b = await clients.connected(urlOf(server), { userId: bob });
    await delivered;
    expect(b.conversations()[0]).to.include({ unread: 1 });
    const read = next(a, "status", (c) => c.messageId === sent.messageId && c.status === "read");
    expect(await b.markRead(sent.conversationId!)).to.equal(1);
    await read;
    expect(b.conversations()[0]).to.include({ unread: 0 });
    const statuses = seen.map(([c]) => c.status);
    expect(statuses).to.deep.equal(["pending", "sent", "delivered", "read"] satisfies MessageStatus[]);
  });

  it("hands the app the backlog, acknowledges it, and says synced", async () => {
    const carol = uniqueId("carol");
    const sender = await new Device(urlOf(server), { userId: uniqueId("dave") }).connectSynced();
    devices.push(sender);
    for (const content of ["one", "two", "three"]) {
      const r = await sender.request("message:send", { clientMsgId: uniqueId("m"), to: carol, content });
      expect(r.ok).to.equal(true);
    }
    const c = clients.create(urlOf(server), { userId: carol });
    const got = record(c, "message");
    const synced = c.whenSynced();
    await c.connect();
    expect(await synced).to.deep.equal({ delivered: 3 });
    expect(got.map(([m, source]) => [m.content, source])).to.deep.equal([
      ["one", "backlog"],
      ["two", "backlog"],
      ["three", "backlog"],
    ]);
    // Acknowledged: the sender sees them delivered.
    await waitFor(() => sender.statuses.filter((s) => s.status === "delivered").flatMap((s) => s.messageIds).length === 3, "receipts");
  });

  it("gap-fill: a device offline while another device of the user took the messages ends with the same messages", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const phone = await clients.connected(urlOf(server), { userId: alice, deviceId: "phone" });
    const laptop = await clients.connected(urlOf(server), { userId: alice, deviceId: "laptop" });
    const b = await clients.connected(urlOf(server), { userId: bob });
    const first = await b.send({ to: alice }, "first");
    const [{ conversationId }] = await next(b, "status", (c) => c.clientMsgId === first.clientMsgId && c.status === "sent");
    await waitFor(() => laptop.messages(conversationId!).length === 1 && phone.messages(conversationId!).length === 1, "both devices");

    // The laptop goes offline; the phone takes 130 messages (so delivered: no backlog for the laptop).
    laptop.socket.disconnect();
    for (let i = 0; i < 130; i++) await b.send({ to: alice }, `m${i}`);
    const fromPhone = await phone.send({ conversationId: conversationId! }, "sent from the phone");
    const phoneSent = next(phone, "status", (c) => c.clientMsgId === fromPhone.clientMsgId && c.status === "sent");
    await waitFor(() => phone.messages(conversationId!).length === 132, "phone has everything", 30_000);
    await phoneSent;
    const filled = record(laptop, "message");
    const synced = laptop.whenSynced();
    laptop.socket.connect();
    await synced;
    const ids = (c: TicksClient) => c.messages(conversationId!).map((m) => m.id);
    expect(ids(laptop)).to.deep.equal(ids(phone));
    expect(laptop.messages(conversationId!).map((m) => m.seq)).to.deep.equal(Array.from({ length: 132 }, (_, i) => i + 1));
    // Each reached the app once, in seq order. The phone confirmed them, so they came from
    // history ("sync"); any whose receipt the server had not yet committed (a loaded machine)
    // came in the backlog instead: either way, nothing twice and nothing missing.
    expect(filled.map(([m]) => m.seq)).to.deep.equal(Array.from({ length: 131 }, (_, i) => i + 2));
    expect(filled.map(([, source]) => source)).to.include("sync");
    expect(filled.every(([, source]) => source === "sync" || source === "backlog")).to.equal(true);
  });

  it("multi-device: a send from one device shows on the other, and a read on one clears the other's badge", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const phone = await clients.connected(urlOf(server), { userId: alice, deviceId: "phone" });
    const laptop = await clients.connected(urlOf(server), { userId: alice, deviceId: "laptop" });
    const b = await clients.connected(urlOf(server), { userId: bob });
    const onLaptop = next(laptop, "message", (m) => m.content === "from the phone");
    const mine = await phone.send({ to: bob }, "from the phone");
    const [[m, source]] = await Promise.all([onLaptop, next(b, "message", (x) => x.content === "from the phone")]);
    expect(m).to.include({ from: alice, clientMsgId: mine.clientMsgId });
    expect(source).to.equal("live");
    expect(laptop.statusOf(m.id)).to.equal("sent");

    const both = Promise.all([
      next(phone, "conversation", (c) => c.id === m.conversationId && c.unread === 1),
      next(laptop, "conversation", (c) => c.id === m.conversationId && c.unread === 1),
    ]);
    await b.send({ to: alice }, "reply");
    await both;
    const cleared = next(phone, "conversation", (c) => c.id === m.conversationId && c.unread === 0);
    expect(await laptop.markRead(m.conversationId)).to.equal(1);
    await cleared;
  });

  it("retries RATE_LIMITED after a delay and never drops a message", async () => {
    const limited = await startServer(db.url, { RATE_LIMIT_EVENTS_PER_SEC: "5", RATE_LIMIT_BURST: "0" });
    try {
      const erin = uniqueId("erin");
      const e = await clients.connected(urlOf(limited), { userId: erin });
      let attempts = 0;
      e.socket.onAnyOutgoing((event) => {
        if (event === "message:send") attempts++;
      });
      const sent = record(e, "status");
      const frank = uniqueId("frank");
      const locals = await Promise.all(Array.from({ length: 25 }, (_, i) => e.send({ to: frank }, `burst ${i}`)));
      await waitFor(() => sent.filter(([c]) => c.status === "sent").length === 25, "all sent", 45_000);
      expect(sent.some(([c]) => c.status === "failed")).to.equal(false);
      expect(attempts).to.be.above(25); // some were refused and sent again
      const rows = await stored(erin);
      expect(rows.map((r) => r.client_msg_id)).to.deep.equal(locals.map((l) => l.clientMsgId));
    } finally {
      await limited.stop();
    }
  });

  it("marks a message the server refuses for good (TOO_LARGE, BAD_REQUEST) failed with the reason, and goes on", async () => {
    const small = await startServer(db.url, { MAX_CONTENT_LENGTH: "10" });
    try {
      const gina = uniqueId("gina");
      // The app did not tell the SDK the server's limit: the server's answer decides.
      const g = await clients.connected(urlOf(small), { userId: gina });
      const tooLong = await g.send({ to: uniqueId("hal") }, "x".repeat(11));
      const toSelf = await g.send({ to: gina }, "me");
      const fine = await g.send({ to: uniqueId("hal") }, "short");
      const [[failedLong], [failedSelf], [ok]] = await Promise.all([
        next(g, "status", (c) => c.clientMsgId === tooLong.clientMsgId && c.status !== "pending"),
        next(g, "status", (c) => c.clientMsgId === toSelf.clientMsgId && c.status !== "pending"),
        next(g, "status", (c) => c.clientMsgId === fine.clientMsgId && c.status !== "pending"),
      ]);
      expect(failedLong.status).to.equal("failed");
      expect(failedLong.error!.code).to.equal("TOO_LARGE");
      expect(failedSelf.status).to.equal("failed");
      expect(failedSelf.error!.code).to.equal("BAD_REQUEST");
      expect(ok.status).to.equal("sent");
      expect((await stored(gina)).map((r) => r.content)).to.deep.equal(["short"]);
      expect(g.pending()).to.deep.equal([]);
    } finally {
      await small.stop();
    }
  });

  it("refuses over-long content locally, by code points and by encoded bytes", async () => {
    const ivan = uniqueId("ivan");
    const i = await clients.connected(urlOf(server), { userId: ivan, maxContentLength: 10 });
    // 10 emoji are 20 UTF-16 units but 10 code points: allowed.
    expect((await i.send({ to: uniqueId("jo") }, "😀".repeat(10))).status).to.equal("pending");
    expect(await refusal(i.send({ to: uniqueId("jo") }, "😀".repeat(11)))).to.be.instanceOf(ContentTooLargeError).with.property("message").that.matches(/11 characters; the limit is 10/);

    // Within the server's packet limit, every content within the length limit fits, escapes included.
    const k = await clients.connected(urlOf(server), { userId: uniqueId("kim"), maxContentLength: 4096 });
    expect((await k.send({ to: uniqueId("jo") }, "\u0001".repeat(4096))).status).to.equal("pending");
    // A smaller limit in between (a proxy's frame size): refused by encoded bytes.
    const viaProxy = await clients.connected(urlOf(server), { userId: uniqueId("lou"), maxPacketBytes: 8192 });
    expect(await refusal(viaProxy.send({ to: uniqueId("jo") }, "é".repeat(4000)))).to.be.instanceOf(ContentTooLargeError).with.property("message").that.matches(/8002 bytes encoded/);
    expect((await viaProxy.send({ to: uniqueId("jo") }, "é".repeat(3000))).status).to.equal("pending");
    expect(viaProxy.pending()).to.have.length(1);
  });

  it("reports a send pending only once the storage holds it; a refused write rejects and sends nothing", async () => {
    /** A storage whose writes wait for the test to let them through, or fail. */
    class GatedStorage extends MemoryOutboxStorage {
      open!: () => void;
      private readonly gate = new Promise<void>((resolve) => (this.open = resolve));
      refuse = false;
      override async put(entry: Parameters<MemoryOutboxStorage["put"]>[0]): Promise<void> {
        await this.gate;
        if (this.refuse) throw new Error("quota exceeded");
        await super.put(entry);
      }
    }
    const storage = new GatedStorage();
    const olga = uniqueId("olga");
    const pat = uniqueId("pat");
    const o = await clients.connected(urlOf(server), { userId: olga, storage });
    const statuses = record(o, "status");
    const outgoing: string[] = [];
    o.socket.onAnyOutgoing((event) => outgoing.push(event));

    let resolved = false;
    const sending = o.send({ to: pat }, "held by the storage").then((local) => ((resolved = true), local));
    await new Promise((r) => setTimeout(r, 50));
    // Not stored yet: not pending to the app, not on the wire.
    expect(resolved).to.equal(false);
    expect(o.pending()).to.deep.equal([]);
    expect(statuses).to.deep.equal([]);
    expect(outgoing).to.deep.equal([]);
    storage.open();
    const local = await sending;
    await next(o, "status", (c) => c.clientMsgId === local.clientMsgId && c.status === "sent");
    expect(statuses.map(([c]) => c.status)).to.deep.equal(["pending", "sent"]);

    storage.refuse = true;
    const error = await refusal(o.send({ to: pat }, "refused by the storage"));
    expect(error).to.be.instanceOf(OutboxStorageError).with.property("message").that.matches(/quota exceeded/);
    storage.refuse = false;
    const after = await o.send({ to: pat }, "after the refusal");
    await next(o, "status", (c) => c.clientMsgId === after.clientMsgId && c.status === "sent");
    expect((await stored(olga)).map((r) => r.content)).to.deep.equal(["held by the storage", "after the refusal"]);
    expect(statuses.map(([c]) => c.status)).to.deep.equal(["pending", "sent", "pending", "sent"]);
    expect(o.pending()).to.deep.equal([]);
  });

  it("calls getToken() at every connect", async () => {
    const jwt = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET });
    try {
      const lee = uniqueId("lee");
      let calls = 0;
      const c = clients.create(urlOf(jwt), {
        getToken: async () => {
          calls++;
          return mintToken(lee);
        },
      });
      const synced = c.whenSynced();
      await c.connect();
      await synced;
      expect(c.me).to.equal(lee);
      c.socket.io.engine.close(); // a dropped connection: the SDK reconnects by itself
      await next(c, "synced");
      expect(calls).to.equal(2);
    } finally {
      await jwt.stop();
    }
  });
});

describe("SDK outbox across a server crash mid-send", function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let node: NodeProcess | undefined;
  let pg: Client;
  const clients = new SdkClients();

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  after(async () => {
    clients.closeAll();
    await node?.kill("SIGKILL");
    await pg.end();
    await db.drop();
  });

  it("sends again with the same clientMsgId after the server died holding the send: exactly one stored", async () => {
    const port = String(await freePort());
    const env = { DATABASE_URL: db.url, AUTH_MODE: "dev", PORT: port, RATE_LIMIT_EVENTS_PER_SEC: "0" };
    node = await spawnNode(env);
    const mia = uniqueId("mia");
    const storage = new MemoryOutboxStorage();
    const m = await clients.connected(node.url, { userId: mia, storage });
    const outgoing: string[] = [];
    m.socket.onAnyOutgoing((event, payload: { clientMsgId?: string }) => {
      if (event === "message:send") outgoing.push(payload.clientMsgId!);
    });

    // The database holds the send: the server has it, has not committed it, and dies.
    const lock = new Client({ connectionString: db.url });
    await lock.connect();
    await lock.query("BEGIN");
    await lock.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
    const first = await m.send({ to: uniqueId("ned") }, "in flight when the server died");
    const blocked = async () =>
      (await pg.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = 'messages'::regclass")).rows[0].n > 0;
    for (let i = 0; !(await blocked()); i++) {
      if (i > 500) throw new Error("the send never reached the database");
      await new Promise((r) => setTimeout(r, 20));
    }
    await node.kill("SIGKILL");
    await lock.query("ROLLBACK");
    await lock.end();
    expect(storage.size).to.equal(1);

    // While the server is down, more sends wait behind it.
    await waitFor(() => !m.connected, "disconnect");
    const second = await m.send({ to: uniqueId("ned") }, "sent while the server was down");
    const sent = record(m, "status");
    node = await spawnNode(env);
    await waitFor(() => sent.filter(([c]) => c.status === "sent").length === 2, "both stored after the restart", 30_000);

    const rows = (
      await pg.query("SELECT client_msg_id, content FROM messages WHERE from_user_id = $1 ORDER BY created_at", [mia])
    ).rows;
    expect(rows).to.deep.equal([
      { client_msg_id: first.clientMsgId, content: "in flight when the server died" },
      { client_msg_id: second.clientMsgId, content: "sent while the server was down" },
    ]);
    // The first went out at least twice, always with its one clientMsgId.
    expect(outgoing.filter((id) => id === first.clientMsgId).length).to.be.at.least(2);
    expect(new Set(outgoing)).to.deep.equal(new Set([first.clientMsgId, second.clientMsgId]));
    expect(storage.size).to.equal(0);
  });
});
