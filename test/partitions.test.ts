import { expect } from "chai";
import pino from "pino";
import { Client } from "pg";
import type { Clock } from "../src/clock";
import { startTicks, type RunningTicks } from "../src/main";
import type { Message } from "../src/protocol";
import { DAY_MS } from "../src/storage/partitions";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId } from "./helpers/device";
import { testConfig, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";
import { waitFor } from "./helpers/wait";

const HOUR = 3_600_000;

/** A clock that stands still where the test puts it: a write lands on the exact millisecond. */
class SetClock implements Clock {
  constructor(public t: number) {}
  now(): Date {
    return new Date(this.t);
  }
}

const dayName = (ms: number) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, "");

describe("time-partitioned messages", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let pg: Client;
  const servers: RunningTicks[] = [];
  const devices: Device[] = [];
  const logLines: { level: number; msg: string; partitions?: string[] }[] = [];
  // Midnight (UTC) of the real today: each test works in days of its own, far apart.
  const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;

  const start = async (clock: Clock, env: Record<string, string> = {}) => {
    const config = testConfig({ DATABASE_URL: db.url, AUTH_MODE: "dev", EXPIRY_SWEEP_INTERVAL_MS: "3600000", ...env });
    const log = pino({ level: "info" }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
    const s = await startTicks(config, { clock, log });
    servers.push(s);
    return s;
  };
  const connect = async (server: RunningTicks, userId: string) => {
    const d = new Device(urlOf(server), { userId });
    devices.push(d);
    return d.connectSynced();
  };
  const partitionOf = async (table: string, id: string) =>
    (await pg.query(`SELECT tableoid::regclass::text AS p FROM ${table} WHERE message_id = $1`, [id])).rows.map((r) => r.p);
  const partitions = async (table: string) =>
    (
      await pg.query(
        `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`,
        [table],
      )
    ).rows.map((r) => r.relname as string);

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

  it("creates the partitions of the next days ahead; a write at a day's last and first millisecond lands in its day, one with no partition yet in DEFAULT, never refused", async () => {
    const day = today + 10 * DAY_MS;
    const clock = new SetClock(day - 1);
    const server = await start(clock);
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await connect(server, a);
    // Ten days ahead: no partition covers it yet.
    expect(await partitions("messages")).to.not.include(`messages_p${dayName(day - 1)}`);
    const last = await alice.send(b, "last millisecond");
    expect(await partitionOf("messages", last.id)).to.deep.equal(["messages_default"]);
    expect(await partitionOf("message_delivery", last.id)).to.deep.equal(["message_delivery_default"]);

    // The sweep makes that day's partition and the next ones, and moves the row into it.
    await server.sweeper.sweepNow();
    for (let d = -1; d <= 2; d++) {
      expect(await partitions("messages")).to.include(`messages_p${dayName(day + d * DAY_MS)}`);
      expect(await partitions("message_delivery")).to.include(`message_delivery_p${dayName(day + d * DAY_MS)}`);
    }
    expect(await partitionOf("messages", last.id)).to.deep.equal([`messages_p${dayName(day - 1)}`]);
    expect(await partitionOf("message_delivery", last.id)).to.deep.equal([`message_delivery_p${dayName(day - 1)}`]);

    clock.t = day;
    const first = await alice.send(b, "first millisecond");
    expect(await partitionOf("messages", first.id)).to.deep.equal([`messages_p${dayName(day)}`]);
    expect(await partitionOf("message_delivery", first.id)).to.deep.equal([`message_delivery_p${dayName(day)}`]);
    expect(first.seq).to.equal(last.seq + 1);

    const bob = await connect(server, b);
    expect(bob.received.map((m) => m.id)).to.deep.equal([last.id, first.id]);
  });

  it("answers a retry that lands in a later partition than its original with the original, also concurrently", async () => {
    const day = today + 20 * DAY_MS;
    const clock = new SetClock(day - 1);
    const server = await start(clock);
    await server.sweeper.sweepNow();
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await connect(server, a);
    const clientMsgId = uniqueId("c");
    const original = await alice.send(b, "once", clientMsgId);
    clock.t = day + HOUR;
    const retries = await Promise.all([1, 2, 3].map(() => alice.request("message:send", { clientMsgId, to: b, content: "once" })));
    for (const r of retries) {
      expectOk(r);
      expect(r.duplicate).to.equal(true);
      expect(r.message).to.deep.equal(original);
    }
    const rows = await pg.query("SELECT message_id FROM messages WHERE from_user_id = $1", [a]);
    expect(rows.rows.map((r) => r.message_id)).to.deep.equal([original.id]);
    const keys = await pg.query("SELECT message_id FROM message_idempotency WHERE from_user_id = $1", [a]);
    expect(keys.rows.map((r) => r.message_id)).to.deep.equal([original.id]);
    // A new message in the later day takes the next seq: no gap, no duplicate.
    expect((await alice.send(b, "next")).seq).to.equal(original.seq + 1);
  });

  it("drops a partition once every row in it expired, never earlier; expired rows of a live partition are not delivered", async () => {
    const day = today + 30 * DAY_MS;
    const clock = new SetClock(day + 23 * HOUR);
    const server = await start(clock, { MESSAGE_TTL_DAYS: "1" });
    await server.sweeper.sweepNow();
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await connect(server, a);
    const m1 = await alice.send(b, "late on day one");
    clock.t = day + 25 * HOUR;
    const m2 = await alice.send(b, "early on day two");
    // An entry of day two acting on day one's message: it expires with m1.
    const reaction = await alice.request("message:react", { clientMsgId: uniqueId("r"), messageId: m1.id, emoji: "👍" });
    expectOk(reaction);
    expect(await partitionOf("messages", reaction.message.id)).to.deep.equal([`messages_p${dayName(day + DAY_MS)}`]);
    const dayOne = `messages_p${dayName(day)}`;

    // Day one is over, but m1 is still live: its partition stays.
    clock.t = day + 46 * HOUR;
    await server.sweeper.sweepNow();
    expect(await partitions("messages")).to.include(dayOne);
    expect(await partitionOf("messages", m1.id)).to.deep.equal([dayOne]);

    // m1 expired: day one goes, with its delivery rows; day two (m2 live) stays.
    clock.t = day + 47 * HOUR + 1000;
    expect(await server.sweeper.sweepNow()).to.equal(1);
    expect(await partitions("messages")).to.not.include(dayOne);
    expect(await partitions("message_delivery")).to.not.include(`message_delivery_p${dayName(day)}`);
    expect((await pg.query("SELECT 1 FROM message_delivery WHERE message_id = $1", [m1.id])).rows).to.have.length(0);

    // Bob, who was away all along, gets m2 and nothing expired (the reaction's row is still stored).
    const bob = await connect(server, b);
    expect(bob.received.map((m) => m.id)).to.deep.equal([m2.id]);
    expect(await partitionOf("messages", reaction.message.id)).to.have.length(1);

    // Day two is over but m2 lives until day + 49 h: kept, and still readable.
    clock.t = day + 48 * HOUR + 1000;
    expect(await server.sweeper.sweepNow()).to.equal(0);
    const history = await bob.request("message:history", { conversationId: m2.conversationId });
    expectOk(history);
    expect(history.messages.map((m: Message) => m.id)).to.deep.equal([m2.id]);

    clock.t = day + 49 * HOUR + 1000;
    expect(await server.sweeper.sweepNow()).to.equal(2);
    expect(await partitions("messages")).to.not.include(`messages_p${dayName(day + DAY_MS)}`);
    // The idempotency keys of expired messages go too.
    const keys = await pg.query("SELECT count(*)::int AS n FROM message_idempotency WHERE from_user_id = $1", [a]);
    expect(keys.rows[0].n).to.equal(0);
  });

  it("loses no write and drops no live partition when the clock jumps a day forward and back", async () => {
    const clock = new SetClock(Date.now());
    const server = await start(clock);
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await connect(server, a);
    const sent: Message[] = [];
    const steps = [0, DAY_MS, -DAY_MS, -DAY_MS, 2 * DAY_MS];
    for (const step of steps) {
      clock.t += step;
      sent.push(await alice.send(b, `at ${new Date(clock.t).toISOString()}`));
      expect(await server.sweeper.sweepNow()).to.equal(0);
    }
    const stored = await pg.query("SELECT message_id, seq::int FROM messages WHERE from_user_id = $1 ORDER BY seq", [a]);
    expect(stored.rows.map((r) => r.message_id)).to.deep.equal(sent.map((m) => m.id));
    expect(stored.rows.map((r) => r.seq)).to.deep.equal([1, 2, 3, 4, 5]);
    // Every partition that held live rows is still there.
    const after = await partitions("messages");
    for (const m of sent) expect(after).to.include((await partitionOf("messages", m.id))[0]);
    expect(after).to.include("messages_default");
    const bob = await connect(server, b);
    expect(bob.received.map((m) => m.id)).to.deep.equal(sent.map((m) => m.id));
  });

  it("keeps serving when an operator drops partitions by hand: logs it, and their messages are gone as if expired", async () => {
    const day = today + 40 * DAY_MS;
    const clock = new SetClock(day + 12 * HOUR);
    const server = await start(clock);
    await server.sweeper.sweepNow();
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await connect(server, a);
    const lost = await alice.send(b, "in the dropped partition");
    const group = await alice.request("group:create", { title: "before", members: [b] });
    expectOk(group);
    const rename = { clientMsgId: uniqueId("g"), conversationId: group.conversationId, title: "renamed" };
    const renamed = await alice.request("group:update", rename);
    expectOk(renamed);

    await pg.query(`DROP TABLE messages_p${dayName(day)}, message_delivery_p${dayName(day)}`);
    // Writes go on (into DEFAULT), a retry of a message that went is stored anew.
    const after = await alice.send(b, "after the drop");
    expect(await partitionOf("messages", after.id)).to.deep.equal(["messages_default"]);
    const retry = await alice.request("message:send", { clientMsgId: lost.clientMsgId, to: b, content: "again" });
    expectOk(retry);
    expect(retry.duplicate).to.equal(false);
    expect(retry.message.id).to.not.equal(lost.id);

    // The same for a group change whose entry went.
    const renamedAgain = await alice.request("group:update", rename);
    expectOk(renamedAgain);
    expect(renamedAgain.duplicate).to.equal(false);
    expect(renamedAgain.message.id).to.not.equal(renamed.message.id);

    const bob = await connect(server, b);
    expect(bob.received.filter((m) => m.conversationId === after.conversationId).map((m) => m.id)).to.deep.equal([
      after.id,
      retry.message.id,
    ]);
    const history = await bob.request("message:history", { conversationId: after.conversationId });
    expectOk(history);
    expect(history.messages.map((m: Message) => m.id)).to.deep.equal([after.id, retry.message.id]);

    // The sweep notices, says so, and puts the day back with what DEFAULT caught.
    logLines.length = 0;
    await server.sweeper.sweepNow();
    await waitFor(() => logLines.some((l) => l.level === 40 && /dropped outside the sweep/.test(l.msg)), "hand-drop warning");
    expect(await partitionOf("messages", after.id)).to.deep.equal([`messages_p${dayName(day)}`]);

    // Only one half of the next day dropped: the other half goes too, with a warning.
    clock.t = day + DAY_MS + HOUR;
    const orphaned = await alice.send(b, "on the next day");
    logLines.length = 0;
    await pg.query(`DROP TABLE messages_p${dayName(day + DAY_MS)}`);
    await server.sweeper.sweepNow();
    expect((await pg.query("SELECT 1 FROM message_delivery WHERE message_id = $1", [orphaned.id])).rows).to.have.length(0);
    const warned = logLines.find((l) => l.level === 40 && /dropped outside the sweep/.test(l.msg));
    expect(warned?.partitions).to.include(`messages_p${dayName(day + DAY_MS)}`);
    // And the day comes back for the writes to come.
    expect(await partitions("messages")).to.include(`messages_p${dayName(day + DAY_MS)}`);
    expectOk(await alice.request("message:send", { clientMsgId: uniqueId("c"), to: b, content: "still fine" }));
  });
});
