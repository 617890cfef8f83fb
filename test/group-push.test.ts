import { expect } from "chai";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { FakePushGateway } from "./helpers/pushGateway";
import { expectOk } from "./helpers/replies";
import { startServer, urlOf } from "./helpers/server";

/**
 * Pushes follow membership, on two nodes through Redis: a member who was removed, offline
 * with a pushkey, is pushed for what was stored before the removal entry and never for
 * anything after it; a member added later is pushed only from their entry on.
 */
describe("group pushes follow membership (two nodes through Redis)", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let gw: FakePushGateway;
  let nodes: RunningTicks[];
  const devices: Device[] = [];
  const device = (node: number, userId: string) => {
    const d = new Device(urlOf(nodes[node]!), { userId });
    devices.push(d);
    return d;
  };
  const register = async (node: number, userId: string, pushkey: string) => {
    const d = await device(node, userId).connectSynced();
    expect(await d.request("push:register", { pushkey, appId: "com.example.ticks" })).to.deep.equal({ ok: true });
    d.close();
  };

  before(async () => {
    db = await createTestDatabase();
    gw = await new FakePushGateway().start();
    const env = {
      REDIS_URL: "redis://127.0.0.1:6379",
      REDIS_PREFIX: uniqueId("ticks-test"),
      PUSH_GATEWAY_URL: gw.url,
      PUSH_DELAY_MS: "100",
      PUSH_RETRY_MIN_MS: "50",
    };
    nodes = [await startServer(db.url, env), await startServer(db.url, env)];
  });
  after(async () => {
    devices.splice(0).forEach((d) => d.close());
    await Promise.all(nodes.map((n) => n.stop()));
    await gw.stop();
    await db.drop();
  });

  it("pushes a removed member only for what came before the removal, an added one only from their entry", async () => {
    const [a, b, c] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const bobKey = uniqueId("bobkey");
    const carolKey = uniqueId("carolkey");
    await register(1, b, bobKey);
    await register(1, c, carolKey);
    const alice = await device(0, a).connectSynced();
    const created = await alice.request("group:create", { title: "pushes", members: [b] });
    expectOk(created);
    const group = created.conversationId;

    const before = await alice.send({ conversationId: group }, "before");
    const removal = await alice.request("group:remove", { clientMsgId: uniqueId("rm"), conversationId: group, userId: b });
    expectOk(removal);
    const added = await alice.request("group:add", { clientMsgId: uniqueId("add"), conversationId: group, userIds: [c] });
    expectOk(added);
    const after = await alice.send({ conversationId: group }, "after");

    await waitFor(() => gw.for(before.id).length === 1 && gw.for(after.id).length === 1, "the two pushes");
    await quiet(500); // past PUSH_DELAY_MS and a retry: nothing else is coming
    const keysOf = (id: string) => gw.for(id).flatMap((r) => r.body.notification.devices.map((d) => d.pushkey));
    expect(keysOf(before.id)).to.deep.equal([bobKey]);
    expect(keysOf(after.id)).to.deep.equal([carolKey]);
    // Group entries are not pushed (text only), to anyone.
    expect(gw.for(removal.message.id)).to.deep.equal([]);
    expect(gw.for(added.message.id)).to.deep.equal([]);
  });
});
