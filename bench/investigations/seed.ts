/**
 * Seeds a Ticks database with an old history (see bench/lib/seed.ts), for EXPLAIN work by
 * hand or for bench/investigations/explain.ts. The bench's history scenario uses the same code.
 *
 *   node --import tsx bench/investigations/seed.ts --messages 2000000                  # new database, URL printed
 *   node --import tsx bench/investigations/seed.ts --url postgres://…/mydb --messages 5000000
 */
import { Command } from "commander";
import { createTestDatabase } from "../../test/helpers/database";
import { migratedDatabase } from "../lib/ticks";
import { seedHistory } from "../lib/seed";

async function main(): Promise<void> {
  const o = new Command()
    .option("--url <url>", "an existing database (migrated here if needed); default: a new one, kept")
    .option("--messages <n>", "messages to seed", Number, 2_000_000)
    .option("--conversations <n>", "direct conversations they are spread over", Number, 50_000)
    .option("--content-size <chars>", "content length", Number, 100)
    .parse()
    .opts<{ url?: string; messages: number; conversations: number; contentSize: number }>();
  const url = o.url ?? (await createTestDatabase()).url;
  await migratedDatabase(url);
  const r = await seedHistory(url, { ...o, log: (l) => console.error(l) });
  console.error(`seeded in ${r.seconds.toFixed(1)} s`);
  console.log(url);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
