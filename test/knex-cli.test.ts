import { expect } from "chai";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "pg";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { ROOT } from "./helpers/processes";
import { startServer } from "./helpers/server";
import { MigrationSource } from "../src/storage/MigrationSource";

const run = promisify(execFile);
const KNEX = path.join(ROOT, "node_modules/.bin/knex");

/** Operators migrate with the Knex CLI; the server must agree with what it recorded. */
describe("migrations through the Knex CLI", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let pg: Client;

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  after(async () => {
    await pg.end();
    await db.drop();
  });

  it("`npx knex migrate:latest` loads knexfile.ts and builds the schema the server then uses as is", async () => {
    const env = { ...process.env, DATABASE_URL: db.url };
    // Every file in migrations/, whoever added it, under its name without extension.
    const all = await new MigrationSource().getMigrations();
    expect(all[0]).to.equal("20261126000001_core");
    const { stdout } = await run(KNEX, ["migrate:latest"], { cwd: ROOT, env });
    expect(stdout).to.include(`Batch 1 run: ${all.length} migrations`);
    const names = (await pg.query("SELECT name FROM knex_migrations ORDER BY id")).rows.map((r) => r.name);
    expect(names).to.deep.equal(all);

    const server = await startServer(db.url);
    await server.stop();
    const after = await pg.query("SELECT count(*)::int AS n, max(batch) AS batch FROM knex_migrations");
    expect(after.rows[0]).to.deep.equal({ n: all.length, batch: 1 }); // nothing re-run under the .js names
    const status = await run(KNEX, ["migrate:status"], { cwd: ROOT, env });
    expect(status.stdout).to.match(/No Pending Migration files Found/);

    // The queries operators already run keep working.
    const count = await pg.query("SELECT count(*) FROM message_delivery WHERE recipient_id = 'bob' AND status = 'sent'");
    expect(Number(count.rows[0].count)).to.equal(0);
    await pg.query("SELECT m.content, d.status FROM messages m JOIN message_delivery d ON d.message_id = m.message_id");
  });
});
