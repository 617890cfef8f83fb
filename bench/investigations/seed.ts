/**
 * Seeds a Ticks database with an old history (see bench/lib/seed.ts), for EXPLAIN work by
 * hand, for bench/investigations/explain.ts and expiry.ts, or as a template for the
 * history scenario (`npm run bench -- --scenarios history --history-template <db>`).
 * The bench's history scenario uses the same code.
 *
 *   node --import tsx bench/investigations/seed.ts --messages 2000000                  # new database, URL printed
 *   node --import tsx bench/investigations/seed.ts --url postgres://…/mydb --messages 5000000
 *   node --import tsx bench/investigations/seed.ts --name ticks_seed_20m --messages 20000000
 *   # 5 M messages that all expired (60 to 31 days old), then 500 000 live ones beside them:
 *   node --import tsx bench/investigations/seed.ts --name ticks_seed_expiry --messages 5000000 --from-days-ago 60 --to-days-ago 31 --prefix old
 *   node --import tsx bench/investigations/seed.ts --url postgres://…/ticks_seed_expiry --messages 500000 --conversations 20000
 */
import { Client } from "pg";
import { Command } from "commander";
import { ADMIN_URL, createTestDatabase } from "../../test/helpers/database";
import { migratedDatabase } from "../lib/ticks";
import { seedHistory } from "../lib/seed";

/** A database of that name (kept), or a fresh one named by the test helper. */
async function newDatabase(name?: string): Promise<string> {
  if (!name) return (await createTestDatabase()).url;
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`--name ${name}: lower-case letters, digits and _ only`);
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function main(): Promise<void> {
  const o = new Command()
    .option("--url <url>", "an existing database (migrated here if needed); default: a new one, kept")
    .option("--name <db>", "name of the new database (default: ticks_test_<random>)")
    .option("--messages <n>", "messages to seed", Number, 2_000_000)
    .option("--conversations <n>", "conversations they are spread over", Number, 50_000)
    .option("--group-share <f>", "share of the conversations that are groups", Number, 0.1)
    .option("--group-size <n>", "members of each group", Number, 8)
    .option("--from-days-ago <d>", "age of the oldest message, days", Number, 29)
    .option("--to-days-ago <d>", "age of the newest message, days", Number, 0)
    .option("--ttl-days <d>", "days from a message's creation to its expiry", Number, 30)
    .option("--stream-every <n>", "every n-th read seq has status stream rows (0: none)", Number, 10)
    .option("--prefix <p>", "user and clientMsgId prefix (a second seed into one database needs another)", "hist")
    .option("--content-size <chars>", "content length", Number, 100)
    .option("--no-migrate", "seed the schema the database has (e.g. an old one, to test a migration)")
    .parse()
    .opts<{
      url?: string;
      name?: string;
      messages: number;
      conversations: number;
      groupShare: number;
      groupSize: number;
      fromDaysAgo: number;
      toDaysAgo: number;
      ttlDays: number;
      streamEvery: number;
      prefix: string;
      contentSize: number;
      migrate: boolean;
    }>();
  const url = o.url ?? (await newDatabase(o.name));
  if (o.migrate) await migratedDatabase(url);
  const r = await seedHistory(url, { ...o, log: (l) => console.error(l) });
  console.error(
    `seeded ${r.messages} messages, ${r.deliveryRows} delivery rows, ${r.streamRows} status stream rows, ` +
      `${r.conversations} conversations (${r.groups} groups), ${r.users} users in ${r.seconds.toFixed(1)} s (inserts ${r.loadSeconds.toFixed(1)} s)`,
  );
  console.log(url);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
