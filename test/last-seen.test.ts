import { expect } from "chai";
import type { Knex } from "knex";
import { createDatabase, migrateToLatest } from "../src/storage/database";
import { SqlMessageStore } from "../src/storage/SqlMessageStore";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/ids";

/** Users going offline: many at once share one UPDATE, and a user's last seen never moves back. */
describe("last seen, written in batches (PostgreSQL)", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let knex: Knex;
  let store: SqlMessageStore;
  const updates: string[] = [];
  before(async () => {
    db = await createTestDatabase();
    knex = createDatabase({ kind: "postgres", url: db.url } as never);
    await migrateToLatest(knex, "postgres");
    knex.on("query", (q: { sql: string }) => {
      if (/^\s*UPDATE users/i.test(q.sql)) updates.push(q.sql);
    });
    store = new SqlMessageStore(knex);
  });
  after(async () => {
    await knex?.destroy();
    await db?.drop();
  });

  it("stores 500 users going offline at once in a few statements, each with its own time", async () => {
    const users = Array.from({ length: 500 }, () => uniqueId("u"));
    await knex.raw(`INSERT INTO users (user_id) SELECT unnest(?::text[])`, [users]);
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
    await knex.raw(`INSERT INTO users (user_id) VALUES (?), (?)`, [a, b]);
    const t = (s: number) => new Date(Date.parse("2026-12-01T12:00:00Z") + s * 1000);
    await Promise.all([store.setLastSeen(a, t(5)), store.setLastSeen(a, t(9)), store.setLastSeen(a, t(7)), store.setLastSeen(b, t(1))]);
    await store.setLastSeen(b, t(0)); // an older time (another node's clock): ignored
    const seen = await store.lastSeen([a, b]);
    expect(seen.get(a)!.getTime()).to.equal(t(9).getTime());
    expect(seen.get(b)!.getTime()).to.equal(t(1).getTime());
  });
});
