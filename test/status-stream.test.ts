import { expect } from "chai";
import type { StatusUpdate } from "../src/protocol";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { expectError, expectOk, okReply } from "./helpers/replies";
import { ManualClock, startServer, urlOf } from "./helpers/server";
import { createTestDatabase } from "./helpers/database";
import { useServerSuite } from "./helpers/serverSuite";

type Synced = { ids: Map<string, Set<string>>; cursor: string | null; pages: number };

/** Every page of `device`'s stream after `after`, following the cursors: status → ids seen. */
async function syncAll(device: Device, after?: string, limit?: number): Promise<Synced & { updates: StatusUpdate[] }> {
  const ids = new Map<string, Set<string>>();
  const updates: StatusUpdate[] = [];
  let cursor: string | null = after ?? null;
  let pages = 0;
  for (;;) {
    const reply = okReply(await device.request("status:sync", { ...(cursor ? { after: cursor } : {}), ...(limit ? { limit } : {}) }));
    pages++;
    for (const u of reply.updates) {
      updates.push(u);
      const set = ids.get(`${u.status} ${u.by}`) ?? new Set<string>();
      u.messageIds.forEach((id) => set.add(id));
      ids.set(`${u.status} ${u.by}`, set);
    }
    if (reply.updates.length > 0) expect(reply.cursor).to.equal(reply.updates.at(-1)!.cursor);
    else expect(reply.cursor).to.equal(cursor);
    cursor = reply.cursor;
    if (!reply.hasMore) return { ids, cursor, pages, updates };
  }
}

describe("status stream (v3): status:sync, cursors, message:info", function () {
  this.timeout(60_000);
  const suite = useServerSuite();

  it("gives every live message:status a cursor, and status:sync pages through the same changes", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b).connectSynced();
    const sent = [];
    for (let i = 0; i < 7; i++) sent.push(await alice.send(b, `m${i}`));
    await waitFor(() => new Set(alice.statuses.flatMap((s) => s.messageIds)).size === 7, "7 delivered receipts");
    expectOk(await bob.request("message:read", { messageIds: sent.map((m) => m.id) }));
    await waitFor(() => alice.statuses.some((s) => s.status === "read"), "the read receipt");
    for (const s of alice.statuses) expect(s.cursor).to.be.a("string").with.length(22);

    // From the start, one change a page: every change, oldest first, delivered before read.
    const all = await syncAll(alice, undefined, 1);
    expect(all.pages).to.equal(14); // 7 delivered + 7 read
    expect([...all.ids.get(`delivered ${b}`)!].sort()).to.deep.equal(sent.map((m) => m.id).sort());
    expect([...all.ids.get(`read ${b}`)!].sort()).to.deep.equal(sent.map((m) => m.id).sort());
    expect(all.updates.findIndex((u) => u.status === "read")).to.be.above(all.updates.findLastIndex((u) => u.status === "delivered"));
    // The default page takes them at once; the read is one update, as it was one event.
    const once = okReply(await alice.request("status:sync", {}));
    expect(once.hasMore).to.equal(false);
    expect(once.updates.filter((u) => u.status === "read")).to.have.length(1);
    // The live read event's cursor is where the stream is: nothing after it.
    const readEvent = alice.statuses.find((s) => s.status === "read")!;
    const after = okReply(await alice.request("status:sync", { after: readEvent.cursor }));
    expect(after).to.deep.include({ updates: [], cursor: readEvent.cursor, hasMore: false });
    // Bob's stream holds his own read (for his other devices), not alice's receipts.
    const bobs = await syncAll(bob);
    expect([...bobs.ids.keys()]).to.deep.equal([`read ${b}`]);
  });

  it("a device that was offline while its messages were read learns it from its cursor", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const phone = await suite.device(a, { deviceId: "phone" }).connectSynced();
    const bob = await suite.device(b).connectSynced();
    const first = await phone.send(b, "before");
    await waitFor(() => phone.statuses.length === 1, "delivered");
    const cursor = phone.statuses[0]!.cursor;
    phone.close();
    const later = await (await suite.device(a, { deviceId: "laptop" }).connectSynced()).send(b, "while the phone is away");
    // Delivered first (bob's device confirms it), so the stream holds both steps for it.
    await waitFor(async () => (await suite.pg.query("SELECT 1 FROM message_delivery WHERE status = 'delivered' AND message_id = $1", [later.id])).rowCount === 1, "later delivered");
    expectOk(await bob.request("message:read", { messageIds: [first.id, later.id] }));
    await waitFor(async () => (await suite.pg.query("SELECT 1 FROM message_delivery WHERE status = 'read' AND message_id = ANY($1)", [[first.id, later.id]])).rowCount === 2, "both read");
    const back = await suite.device(a, { deviceId: "phone" }).connectSynced();
    const caught = await syncAll(back, cursor);
    expect([...caught.ids.get(`read ${b}`)!].sort()).to.deep.equal([first.id, later.id].sort());
    expect([...caught.ids.get(`delivered ${b}`)!]).to.deep.equal([later.id]);
  });

  it("keeps positions in commit order under concurrent receipts: a cursor-following reader misses nothing", async () => {
    const a = uniqueId("alice");
    const readers = [uniqueId("r"), uniqueId("r"), uniqueId("r"), uniqueId("r")];
    const alice = await suite.device(a).connectSynced();
    const devices = await Promise.all(readers.map((r) => suite.device(r, { autoAck: false }).connectSynced()));
    const sent = await Promise.all(readers.flatMap((r) => Array.from({ length: 25 }, (_, i) => alice.send(r, `n${i}`))));
    // A reader that follows the stream while receipts commit concurrently from four users.
    const seen = new Set<string>();
    let cursor: string | undefined;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const r = okReply(await alice.request("status:sync", { ...(cursor ? { after: cursor } : {}), limit: 7 }));
        for (const u of r.updates) u.messageIds.forEach((id) => seen.add(`${u.status} ${id}`));
        cursor = r.cursor ?? undefined;
      }
    })();
    await Promise.all(
      devices.map(async (d) => {
        const mine = sent.filter((m) => m.to === d.userId).map((m) => m.id);
        for (let i = 0; i < mine.length; i += 5) expectOk(await d.request("message:read", { messageIds: mine.slice(i, i + 5) }));
      }),
    );
    polling = false;
    await poller;
    const rest = await syncAll(alice, cursor);
    for (const [key, ids] of rest.ids) ids.forEach((id) => seen.add(`${key.split(" ")[0]} ${id}`));
    for (const m of sent) expect(seen.has(`read ${m.id}`), `read of ${m.id}`).to.equal(true);
  });

  it("a change that commits later never lands behind a cursor already handed out (per-stream lock)", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b, { autoAck: false }).connectSynced();
    const m = await alice.send(b, "read me");
    // Another writer to alice's stream, in flight: it holds her stream's lock and took a
    // position (as a receipt statement on another node would), and has not committed.
    const { Client } = await import("pg");
    const other = new Client({ connectionString: suite.db.url });
    await other.connect();
    let read: Promise<unknown> | undefined;
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_advisory_xact_lock(18, hashtext($1))", [a]);
      await other.query(
        `INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
         VALUES ($1, $2, 'delivered', $3, now(), now() + interval '1 day')`,
        [a, m.id, b],
      );
      // Bob's read commits after it, so it must come after it in alice's stream.
      read = bob.request("message:read", { messageIds: [m.id] });
      await new Promise((r) => setTimeout(r, 300));
      const during = okReply(await alice.request("status:sync", {}));
      await other.query("COMMIT");
      expectOk((await read) as { ok: boolean });
      const rest = await syncAll(alice, during.cursor ?? undefined);
      const seen = [...during.updates, ...rest.updates].map((u) => u.status);
      expect(seen).to.deep.equal(["delivered", "read"]);
    } finally {
      await other.end();
    }
  });

  it("refuses made-up cursors, another user's cursor and limits out of range as BAD_REQUEST, changing nothing", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b).connectSynced();
    const carol = await suite.device(c).connectSynced();
    await alice.send(b, "hi");
    await waitFor(() => alice.statuses.length === 1, "delivered");
    const alicesCursor = alice.statuses[0]!.cursor;
    const bobBefore = okReply(await bob.request("status:sync", {}));
    // Bob has a stream too (his own read): another user's cursor must not open it, nor alice's.
    await carol.send(b, "to read");
    const bobsCursor = okReply(await bob.request("status:sync", {})).cursor;
    const madeUp = [
      "x",
      "0",
      Buffer.alloc(36).toString("base64url"),
      Buffer.alloc(16).toString("base64url"),
      alicesCursor.slice(0, -1) + (alicesCursor.endsWith("A") ? "B" : "A"),
      alicesCursor + "A",
      "a".repeat(129),
    ];
    for (const after of madeUp) expectError(await bob.request("status:sync", { after }), "BAD_REQUEST", `after ${after.slice(0, 20)}`);
    expectError(await bob.request("status:sync", { after: alicesCursor }), "BAD_REQUEST", "alice's cursor used by bob");
    expectError(await carol.request("status:sync", { after: alicesCursor }), "BAD_REQUEST", "alice's cursor used by carol");
    if (bobsCursor) expectError(await alice.request("status:sync", { after: bobsCursor }), "BAD_REQUEST", "bob's cursor used by alice");
    for (const limit of [0, 1001, -1, 1.5, "10", null]) {
      expectError(await alice.raw("status:sync", { limit }), "BAD_REQUEST", `limit ${String(limit)}`);
    }
    for (const payload of [null, "x", { after: 5 }, { after: "" }]) expectError(await alice.raw("status:sync", payload), "BAD_REQUEST", JSON.stringify(payload));
    expect(okReply(await alice.request("status:sync", { limit: 1000 })).updates).to.have.length(1);
    expect(okReply(await alice.request("status:sync", { limit: 1 })).updates).to.have.length(1);
    expect(okReply(await bob.request("status:sync", {})).updates).to.deep.equal(bobBefore.updates);
  });

  it("message:info answers the sender, per recipient, and NOT_FOUND alike for others' and unknown messages", async () => {
    const [a, b, c] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b).connectSynced();
    await suite.device(c).connectSynced();
    const direct = await alice.send(b, "direct");
    await waitFor(() => alice.statuses.length === 1, "delivered");
    expectOk(await bob.request("message:read", { messageIds: [direct.id] }));
    await waitFor(() => alice.statuses.length === 2, "read");
    const info = okReply(await alice.request("message:info", { messageId: direct.id }));
    expect(info.recipients).to.have.length(1);
    expect(info.recipients[0]).to.deep.include({ userId: b, status: "read" });
    expect(Date.parse(info.recipients[0]!.deliveredAt!)).to.be.at.most(Date.parse(info.recipients[0]!.readAt!));

    const group = okReply(await alice.request("group:create", { title: "g", members: [b, c] })).conversationId;
    const inGroup = await alice.send({ conversationId: group }, "to all");
    const gInfo = okReply(await alice.request("message:info", { messageId: inGroup.id }));
    expect(gInfo.recipients.map((r) => r.userId)).to.deep.equal([b, c].sort());

    // Not the sender (the recipient asks), or no such message: the same answer, word for word.
    const notYours = await bob.request("message:info", { messageId: direct.id });
    const unknown = await alice.request("message:info", { messageId: "0190a000-0000-7000-8000-000000000000" });
    expectError(notYours, "NOT_FOUND");
    expectError(unknown, "NOT_FOUND");
    expect(notYours).to.deep.equal(unknown);
    for (const payload of [{ messageId: "nope" }, {}, null]) expectError(await alice.raw("message:info", payload), "BAD_REQUEST");
  });

  it("unread never counts a message deleted for everyone", async () => {
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b, { autoAck: false }).connectSynced();
    const gone = await alice.send(b, "oops");
    await alice.send(b, "kept");
    expectOk(await alice.request("message:delete", { clientMsgId: uniqueId("c"), messageId: gone.id }));
    const list = okReply(await bob.request("conversation:list", {}));
    expect(list.conversations.find((c) => c.lastMessage?.content === "kept")!.unread).to.equal(1);
  });
});

describe("status stream retention", function () {
  this.timeout(60_000);

  it("lives as long as its messages: the expiry sweep removes it", async () => {
    const db = await createTestDatabase();
    const clock = new ManualClock();
    const server = await startServer(db.url, { MESSAGE_TTL_DAYS: "1" }, clock);
    const devices: Device[] = [];
    try {
      const [a, b] = [uniqueId("alice"), uniqueId("bob")];
      const alice = await new Device(urlOf(server), { userId: a }).connectSynced();
      const bob = await new Device(urlOf(server), { userId: b }).connectSynced();
      devices.push(alice, bob);
      const m = await alice.send(b, "short-lived");
      await waitFor(() => alice.statuses.length === 1, "delivered");
      expectOk(await bob.request("message:read", { messageIds: [m.id] }));
      await waitFor(() => alice.statuses.length === 2, "read");
      expect(okReply(await alice.request("status:sync", {})).updates).to.have.length(2);
      clock.advance(24 * 3600_000 + 1000);
      // Expired: no longer shown, even before the sweep.
      expect(okReply(await alice.request("status:sync", {})).updates).to.deep.equal([]);
      expect(await server.sweeper.sweepNow()).to.equal(1);
      const left = await server.db.raw(`SELECT count(*)::int AS n FROM status_stream`);
      expect(left.rows[0].n).to.equal(0);
      // A cursor from before still opens: the stream is empty after it.
      const stale = alice.statuses[1]!.cursor;
      expect(okReply(await alice.request("status:sync", { after: stale }))).to.deep.include({ updates: [], cursor: stale });
    } finally {
      devices.forEach((d) => d.close());
      await server.stop();
      await db.drop();
    }
  });
});
