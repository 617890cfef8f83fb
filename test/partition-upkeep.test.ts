import { expect } from "chai";
import { v7 as uuidv7 } from "uuid";
import { createDatabase, migrateToLatest, type Database } from "../src/storage/database";
import { DAY_MS, SqlPartitions, uuidBound } from "../src/storage/partitions";
import { createTestDatabase, type TestDatabase } from "./helpers/database";

/**
 * The sweep on a database migrated today: the migration's cut leaves today's hours before it
 * to the (empty) legacy partition. Dropping that one is right; making an empty partition for
 * those hours, only to drop it again, took two exclusive locks every round (every send of
 * the node queued behind them) until midnight.
 */
describe("partition upkeep on a database migrated today", function () {
  this.timeout(60_000);
  let tdb: TestDatabase;
  let db: Database;

  before(async () => {
    tdb = await createTestDatabase();
    db = createDatabase({ kind: "postgres", url: tdb.url } as never);
    await migrateToLatest(db, "postgres");
  });
  after(async () => {
    await db.destroy();
    await tdb.drop();
  });

  it("drops the empty legacy partition once, then changes nothing round after round", async () => {
    const partitions = new SqlPartitions(db);
    const now = new Date(Date.now() + 60_000);
    const first = await partitions.maintain(now);
    expect(first.dropped.map((d) => d.name)).to.deep.equal(["messages_legacy"]);
    expect(first.created).to.deep.equal([]);
    for (let round = 0; round < 3; round++) {
      const report = await partitions.maintain(new Date(now.getTime() + round * 60_000));
      expect(report, `round ${round + 2}`).to.deep.include({ created: [], dropped: [], handDropped: [], movedFromDefault: 0 });
    }
  });

  it("still makes a partition for today's earlier hours when DEFAULT caught a row there (a node whose clock lags)", async () => {
    const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    // A message stamped at today's first millisecond: no partition covers it any more, DEFAULT takes it.
    const id = uuidv7({ msecs: today });
    expect(id >= uuidBound(today)).to.equal(true);
    await db.raw(
      `WITH c AS (INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by)
                  VALUES (?, 'direct', 'lag-a lag-b', now(), 'lag-a') RETURNING conversation_id)
       INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content, created_at, expires_at, kind)
       SELECT ?, conversation_id, 1, 'lag-a', 'lag-b', 'lag-1', 'late', now(), now() + interval '30 days', 'text' FROM c`,
      [uuidv7(), id],
    );
    const where = async () => (await db.raw<{ rows: { p: string }[] }>(`SELECT tableoid::regclass::text AS p FROM messages WHERE message_id = ?`, [id])).rows[0]!.p;
    expect(await where()).to.equal("messages_default");
    const report = await new SqlPartitions(db).maintain(new Date());
    const day = new Date(today).toISOString().slice(0, 10).replace(/-/g, "");
    expect(report.created).to.deep.equal([`messages_p${day}`]);
    expect(report.movedFromDefault).to.equal(1);
    expect(report.dropped).to.deep.equal([]);
    expect(await where()).to.equal(`messages_p${day}`);
  });
});
