import { expect } from "chai";
import { Client } from "pg";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";
import { sleep } from "./helpers/wait";

type Reply = { ok: boolean; error?: { code: string } };

describe("per-user rate limit (RATE_LIMIT_EVENTS_PER_SEC, RATE_LIMIT_BURST)", function () {
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

  type Env = Parameters<typeof startServer>[1];
  /** One node with `env`, and one user with a device on it. */
  const oneUserOnOneNode = async (env: Env) => {
    const server = await startServer(db.url, env);
    servers.push(server);
    const a = uniqueId("alice");
    const alice = await new Device(urlOf(server), { userId: a }).connectSynced();
    devices.push(alice);
    return { server, a, alice };
  };
  /** Two nodes with `env`, and one user with a device on each. */
  const oneUserOnNodes = async (env: Env) => {
    const [n1, n2] = [await startServer(db.url, env), await startServer(db.url, env)];
    servers.push(n1, n2);
    const a = uniqueId("alice");
    const phone = await new Device(urlOf(n1), { userId: a }).connectSynced();
    const laptop = await new Device(urlOf(n2), { userId: a }).connectSynced();
    devices.push(phone, laptop);
    return { n1, n2, a, phone, laptop };
  };
  /** Two nodes on a fresh Redis prefix, 10 events a second and `burst`; one user with a device on each. */
  const oneUserOnTwoNodes = (burst: string) =>
    oneUserOnNodes({ RATE_LIMIT_EVENTS_PER_SEC: "10", RATE_LIMIT_BURST: burst, REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: uniqueId("rl") });

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
    const { server, a, alice } = await oneUserOnOneNode({ RATE_LIMIT_EVENTS_PER_SEC: "10", RATE_LIMIT_BURST: "0" });
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
    const { a, phone, laptop } = await oneUserOnTwoNodes("0");
    const replies = (await Promise.all([burst(phone, 15), burst(laptop, 15)])).flat();
    const ok = replies.filter((r) => r.ok).length;
    expect(ok).to.be.within(1, 10);
    expect(replies.filter((r) => r.error?.code === "RATE_LIMITED").length).to.equal(30 - ok);
    expect(await stored(a)).to.equal(ok);
  });

  it("spends the burst allowance past the per-second budget, and does not refill it within the second", async () => {
    const { a, alice } = await oneUserOnOneNode({ RATE_LIMIT_EVENTS_PER_SEC: "10", RATE_LIMIT_BURST: "20" });
    const first = await burst(alice, 50);
    const ok = first.filter((r) => r.ok).length;
    // 10 a second plus the 20 extra (a window may turn over during the burst: 10 more).
    expect(ok).to.be.within(21, 40);
    expect(first.filter((r) => r.error?.code === "RATE_LIMITED").length).to.equal(50 - ok);
    await sleep(1100); // into the next second
    // A new second brings the per-second budget back, not the burst (10 s).
    const second = await burst(alice, 30);
    expect(second.filter((r) => r.ok).length).to.be.within(1, 10);
    expect(await stored(a)).to.equal(ok + second.filter((r) => r.ok).length);
  });

  it("shares the burst allowance across nodes through Redis", async () => {
    const { a, phone, laptop } = await oneUserOnTwoNodes("20");
    const replies = (await Promise.all([burst(phone, 30), burst(laptop, 30)])).flat();
    const ok = replies.filter((r) => r.ok).length;
    // Counted per node it would be up to 30 on each; shared it is 30 in all (40 if a window turns over).
    expect(ok).to.be.within(21, 40);
    expect(await stored(a)).to.equal(ok);
  });

  it("weighs group:create and group:add by their members, and stores nothing for what it refuses", async () => {
    const { a, alice } = await oneUserOnOneNode({ RATE_LIMIT_EVENTS_PER_SEC: "40", RATE_LIMIT_BURST: "0" });
    const members = (n: number) => Array.from({ length: n }, (_, i) => uniqueId(`m${i}`));
    // 255 members and the creator: 32 events of the 40; a second one does not fit this second.
    const first = await alice.request("group:create", { title: "big", members: members(255) });
    expectOk(first);
    const second = (await alice.request("group:create", { title: "big again", members: members(255) })) as Reply;
    expect(second.error?.code).to.equal("RATE_LIMITED");
    const groups = async () =>
      (await pg.query("SELECT count(*)::int AS n FROM conversations WHERE created_by = $1", [a])).rows[0].n as number;
    expect(await groups()).to.equal(1);
    // group:add of 256 users costs 32 too: refused while the budget is spent, allowed in a fresh second.
    const add = () => alice.request("group:add", { clientMsgId: uniqueId("add"), conversationId: first.conversationId, userIds: members(256) });
    expect(((await add()) as Reply).error?.code).to.equal("RATE_LIMITED");
    await sleep(1100);
    expectOk(await add());
    const { rows } = await pg.query("SELECT count(*)::int AS n FROM conversation_members WHERE conversation_id = $1", [first.conversationId]);
    expect(rows[0].n).to.equal(256 + 256);
  });

  it("caps the groups one user creates in an hour (GROUP_CREATE_PER_HOUR), across nodes", async () => {
    const env = { GROUP_CREATE_PER_HOUR: "2", REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: uniqueId("cap") };
    const { n2, a, phone, laptop } = await oneUserOnNodes(env);
    const replies = (await Promise.all(
      [phone, laptop, phone, laptop].map((d, i) => d.request("group:create", { title: `g${i}`, members: [uniqueId("m")] })),
    )) as Reply[];
    expect(replies.filter((r) => r.ok)).to.have.length(2);
    expect(replies.filter((r) => r.error?.code === "RATE_LIMITED")).to.have.length(2);
    const { rows } = await pg.query("SELECT count(*)::int AS n FROM conversations WHERE created_by = $1", [a]);
    expect(rows[0].n).to.equal(2);
    // Another user has a cap of their own.
    const bob = await new Device(urlOf(n2), { userId: uniqueId("bob") }).connectSynced();
    devices.push(bob);
    expectOk(await bob.request("group:create", { title: "mine", members: [a] }));
  });

  describe("at the default settings", () => {
    // The test default turns the limit off; undefined leaves the server's own default.
    const defaults = { RATE_LIMIT_EVENTS_PER_SEC: undefined, RATE_LIMIT_BURST: undefined };

    it("never limits one busy human: a pasted burst of 50, typing, reads, a reconnect's gap-fill", async () => {
      const { server, alice } = await oneUserOnOneNode(defaults);
      const b = uniqueId("bob");
      const bob = await new Device(urlOf(server), { userId: b }).connectSynced();
      devices.push(bob);
      const first = (await alice.request("message:send", { clientMsgId: uniqueId("m"), to: b, content: "hi" })) as Reply & {
        message: { conversationId: string };
      };
      const conversationId = first.message.conversationId;
      const replies: Reply[] = [];
      const send = (i: number) => alice.request("message:send", { clientMsgId: uniqueId("p"), conversationId, content: `line ${i}` });
      replies.push(
        ...((await Promise.all([
          ...Array.from({ length: 50 }, (_, i) => send(i)),
          alice.request("typing", { conversationId, typing: true }),
          alice.request("conversation:list", {}),
          alice.request("typing", { conversationId, typing: false }),
        ])) as Reply[]),
      );
      // Bob answers; Alice reads each reply as it scrolls into view, then reconnects and gap-fills.
      for (let i = 0; i < 20; i++) await bob.request("message:send", { clientMsgId: uniqueId("r"), conversationId, content: `${i}` });
      await waitFor(() => alice.received.length >= 20, "bob's replies");
      for (const m of alice.received) replies.push((await alice.request("message:read", { messageIds: [m.id] })) as Reply);
      replies.push(
        ...((await Promise.all([
          alice.request("conversation:list", {}),
          ...Array.from({ length: 30 }, () => alice.request("message:history", { conversationId, afterSeq: 0, limit: 100 })),
        ])) as Reply[]),
      );
      expect(replies.length).to.equal(104);
      expect(replies.filter((r) => !r.ok).map((r) => r.error?.code)).to.deep.equal([]);
    });

    it("still limits a flooder", async () => {
      const { a, alice } = await oneUserOnOneNode(defaults);
      const replies = await burst(alice, 1000);
      const ok = replies.filter((r) => r.ok).length;
      // 100 a second and 500 extra: far fewer than 1000 even if the burst spans a few seconds.
      expect(ok).to.be.within(600, 800);
      expect(replies.filter((r) => r.error?.code === "RATE_LIMITED").length).to.equal(1000 - ok);
      expect(await stored(a)).to.equal(ok);
    });
  });
});
