import { expect } from "chai";
import { SqlMessageStore } from "../src/storage/SqlMessageStore";
import { uniqueId } from "./helpers/ids";
import { useMigratedDatabase } from "./helpers/migratedDatabase";

/** Users going offline: many at once share one UPDATE, and a user's last seen never moves back. */
describe("last seen, written in batches (PostgreSQL)", function () {
  this.timeout(30_000);
  const t = useMigratedDatabase();
  let store: SqlMessageStore;
  const updates: string[] = [];
  before(() => {
    t.main.on("query", (q: { sql: string }) => {
      if (/^\s*UPDATE users/i.test(q.sql)) updates.push(q.sql);
    });
    store = new SqlMessageStore(t.main, { hotPath: t.hot });
  });

  it("stores 500 users going offline at once in a few statements, each with its own time", async () => {
    const users = Array.from({ length: 500 }, () => uniqueId("u"));
    await t.main.raw(`INSERT INTO users (user_id) SELECT unnest(?::text[])`, [users]);
    const base = Date.parse("2026-12-01T10:00:00Z");
    updates.length = 0;
    await Promise.all(users.map((u, i) => store.setLastSeen(u, new Date(base + i * 1000))));
    expect(updates.length, "statements").to.be.within(1, 3);
    const seen = await store.lastSeen(users);
    expect(seen.size).to.equal(500);
    users.forEach((u, i) => expect(seen.get(u)!.getTime(), u).to.equal(base + i * 1000));
  });

  it("keeps the latest time: within one batch, and against what is stored", async () => {
    const [a, b] = [uniqueId("a"), uniqueId("b")];
    await t.main.raw(`INSERT INTO users (user_id) VALUES (?), (?)`, [a, b]);
    const at = (s: number) => new Date(Date.parse("2026-12-01T12:00:00Z") + s * 1000);
    await Promise.all([store.setLastSeen(a, at(5)), store.setLastSeen(a, at(9)), store.setLastSeen(a, at(7)), store.setLastSeen(b, at(1))]);
    await store.setLastSeen(b, at(0)); // an older time (another node's clock): ignored
    const seen = await store.lastSeen([a, b]);
    expect(seen.get(a)!.getTime()).to.equal(at(9).getTime());
    expect(seen.get(b)!.getTime()).to.equal(at(1).getTime());
  });
});
