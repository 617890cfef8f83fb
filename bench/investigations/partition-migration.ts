/**
 * How long the partitioning migration (migrations/20261202130000_partitioned_messages.ts)
 * takes on a populated database: a fresh database migrated to the schema before it, seeded
 * with bench/lib/seed.ts (plain tables), then `migrate.latest()` timed, then the down
 * migration timed. Each step's wall time is printed; nothing is compared (the test
 * test/partition-migration.test.ts compares rows).
 *
 *   node --import tsx bench/investigations/partition-migration.ts --messages 2000000
 */
import { Command } from "commander";
import knex from "knex";
import { Client } from "pg";
import { createTestDatabase } from "../../test/helpers/database";
import { MigrationSource } from "../../src/storage/MigrationSource";
import { seedHistory } from "../lib/seed";

const BEFORE = "20261202120000_media";

class UpTo extends MigrationSource {
  override async getMigrations(): Promise<string[]> {
    return (await super.getMigrations()).filter((n) => n <= BEFORE);
  }
}

async function main(): Promise<void> {
  const o = new Command()
    .option("--messages <n>", "messages to seed", Number, 300_000)
    .option("--conversations <n>", "direct conversations they spread over", Number, 50_000)
    .parse()
    .opts<{ messages: number; conversations: number }>();
  const db = await createTestDatabase();
  const before = knex({ client: "pg", connection: db.url, migrations: { migrationSource: new UpTo() } });
  const all = knex({ client: "pg", connection: db.url, migrations: { migrationSource: new MigrationSource() } });
  try {
    await before.migrate.latest();
    await seedHistory(db.url, { messages: o.messages, conversations: o.conversations, contentSize: 100, log: (l) => console.error(l) });
    const c = new Client({ connectionString: db.url });
    await c.connect();
    const size = await c.query(
      `SELECT pg_size_pretty(pg_total_relation_size('messages')) AS messages, pg_size_pretty(pg_total_relation_size('message_delivery')) AS delivery`,
    );
    await c.end();
    console.log(`${o.messages} messages seeded (messages ${size.rows[0].messages}, message_delivery ${size.rows[0].delivery})`);
    let t = performance.now();
    await all.migrate.latest();
    console.log(`up:   ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    await all.migrate.down();
    console.log(`down: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  } finally {
    await before.destroy();
    await all.destroy();
    await db.drop();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
