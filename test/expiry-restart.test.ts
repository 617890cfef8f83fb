import { expect } from "chai";
import { Client } from "pg";
import type { RunningTicks } from "../src/main";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { ManualClock, startServer, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";

const DAY = 24 * 3600 * 1000;

describe("expiry and restarts", () => {
  let db: TestDatabase;
  let pg: Client;
  const devices: Device[] = [];
  const servers: RunningTicks[] = [];
  const start = async (env: Record<string, string> = {}, clock?: ManualClock) => {
    const s = await startServer(db.url, env, clock);
    servers.push(s);
    return s;
  };
  const device = (server: RunningTicks, userId: string) => {
    const d = new Device(urlOf(server), { userId });
    devices.push(d);
    return d;
  };

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(async () => {
    devices.splice(0).forEach((d) => d.close());
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });
  after(async () => {
    await pg.end();
    await db.drop();
  });

  it("never delivers an expired message, and the sweep deletes it with its delivery rows", async () => {
    const clock = new ManualClock();
    const server = await start({ MESSAGE_TTL_DAYS: "1" }, clock);
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await device(server, a).connectSynced();
    const old = await alice.send(b, "old news");
    // `fresh` is stamped in the next UTC day: the sweep drops a day's partition once every
    // row in it expired, so `old` must not share its day with a message still live (which
    // half a day later it would, whenever the test runs before noon).
    const toNextDay = DAY - (Date.parse(old.createdAt) % DAY) + 1000;
    clock.advance(toNextDay);
    const fresh = await alice.send(b, "still fresh");
    expect(new Date(fresh.createdAt).getUTCDate()).to.not.equal(new Date(old.createdAt).getUTCDate());
    expect(Date.parse(old.expiresAt) - Date.parse(old.createdAt)).to.equal(DAY);
    clock.advance(DAY - toNextDay + 1000); // `old` is now past expiresAt, `fresh` is not

    const bob = await device(server, b).connectSynced();
    expect(bob.received.map((m) => m.id)).to.deep.equal([fresh.id]);
    const history = await bob.request("message:history", { conversationId: old.conversationId });
    expectOk(history);
    expect(history.messages.map((m) => m.id)).to.deep.equal([fresh.id]);
    expect(await bob.request("message:read", { messageIds: [old.id] })).to.deep.equal({ ok: true, updated: 0 });

    const deleted = await server.sweeper.sweepNow();
    expect(deleted).to.equal(1);
    const rows = await pg.query("SELECT message_id FROM messages WHERE message_id = ANY($1)", [[old.id, fresh.id]]);
    expect(rows.rows.map((r) => r.message_id)).to.deep.equal([fresh.id]);
    const deliveries = await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE message_id = $1", [old.id]);
    expect(deliveries.rows[0].n).to.equal(0);
    // seq is never reused after a sweep.
    const next = await alice.send(b, "after sweep");
    expect(next.seq).to.equal(3);
  });

  it("sweeps in bounded batches until nothing expired is left", async () => {
    const clock = new ManualClock();
    const server = await start({ MESSAGE_TTL_DAYS: "0.5" }, clock);
    const a = uniqueId("alice");
    const alice = await device(server, a).connectSynced();
    const b = uniqueId("bob");
    for (let i = 0; i < 25; i++) await alice.send(b, `m${i}`);
    clock.advance(DAY);
    expect(await server.messaging.sweepExpired(10, 100)).to.be.at.least(25);
    const { rows } = await pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [a]);
    expect(rows[0].n).to.equal(0);
  });

  it("runs the sweep on its own every EXPIRY_SWEEP_INTERVAL_MS", async () => {
    const clock = new ManualClock();
    const server = await start({ MESSAGE_TTL_DAYS: "1", EXPIRY_SWEEP_INTERVAL_MS: "100" }, clock);
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const m = await alice.send(uniqueId("bob"), "soon gone");
    clock.advance(2 * DAY);
    const gone = async () =>
      (await pg.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [m.id])).rows[0].n === 0;
    await waitFor(gone, "the periodic sweep to delete the expired message", 5000, 50);
  });

  it("loses nothing across a server restart", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const first = await start();
    const alice = await device(first, a).connectSynced();
    const sent: Message[] = [];
    for (let i = 0; i < 5; i++) sent.push(await alice.send(b, `before restart ${i}`));
    alice.close();
    await first.stop();

    const second = await start();
    const bob = await device(second, b).connectSynced();
    expect(bob.received.map((m) => m.id)).to.deep.equal(sent.map((m) => m.id));
    // The conversation continues where it was.
    const alice2 = await device(second, a).connectSynced();
    const next = await alice2.send(b, "after restart");
    expect(next.seq).to.equal(6);
    expect(next.conversationId).to.equal(sent[0]!.conversationId);
  });
});
