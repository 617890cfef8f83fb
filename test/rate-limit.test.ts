import { expect } from "chai";
import { Client } from "pg";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";

type Reply = { ok: boolean; error?: { code: string } };

describe("per-user rate limit (RATE_LIMIT_EVENTS_PER_SEC)", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let pg: Client;
  const servers: RunningTicks[] = [];
  const devices: Device[] = [];
  const burst = (d: Device, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        d.request("message:send", { clientMsgId: uniqueId(`burst${i}`), to: "rl-target", content: "x" }),
      ),
    ) as Promise<Reply[]>;
  const stored = async (from: string) =>
    (await pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [from])).rows[0].n as number;

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  afterEach(() => devices.splice(0).forEach((d) => d.close()));
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await pg.end();
    await db.drop();
  });

  it("answers RATE_LIMITED past the budget, stores nothing for those, and recovers a second later", async () => {
    const server = await startServer(db.url, { RATE_LIMIT_EVENTS_PER_SEC: "10" });
    servers.push(server);
    const a = uniqueId("alice");
    const alice = await new Device(urlOf(server), { userId: a }).connectSynced();
    devices.push(alice);
    const replies = await burst(alice, 30);
    const ok = replies.filter((r) => r.ok).length;
    const limited = replies.filter((r) => r.error?.code === "RATE_LIMITED").length;
    expect(ok).to.be.within(1, 10);
    expect(ok + limited).to.equal(30);
    expect(await stored(a)).to.equal(ok);
    // Another user's budget is their own.
    const bob = await new Device(urlOf(server), { userId: uniqueId("bob") }).connectSynced();
    devices.push(bob);
    expectOk(await bob.request("conversation:list", {}));
    // The budget refills within the second: alice is served again.
    await waitFor(async () => (await alice.request("conversation:list", {})).ok, "alice's budget to refill", 3000, 100);
  });

  it("holds across nodes through Redis: one budget per user, whichever node each device is on", async () => {
    const env = { RATE_LIMIT_EVENTS_PER_SEC: "10", REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: uniqueId("rl") };
    const [n1, n2] = [await startServer(db.url, env), await startServer(db.url, env)];
    servers.push(n1, n2);
    const a = uniqueId("alice");
    const phone = await new Device(urlOf(n1), { userId: a }).connectSynced();
    const laptop = await new Device(urlOf(n2), { userId: a }).connectSynced();
    devices.push(phone, laptop);
    const replies = (await Promise.all([burst(phone, 15), burst(laptop, 15)])).flat();
    const ok = replies.filter((r) => r.ok).length;
    expect(ok).to.be.within(1, 10);
    expect(replies.filter((r) => r.error?.code === "RATE_LIMITED").length).to.equal(30 - ok);
    expect(await stored(a)).to.equal(ok);
  });
});
