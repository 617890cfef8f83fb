/**
 * What each hot-path statement costs on a big database: EXPLAIN (ANALYZE, BUFFERS) of the
 * statements exactly as the server runs them: the same SQL text, prepared, with the
 * settings of the server's hot-path connections (storage/database.ts: one generic plan,
 * sequential scans off), each in a transaction that is rolled back, plus the same
 * statement timed from the client without EXPLAIN.
 *
 *   node --import tsx bench/investigations/explain.ts --url postgres://…/seeded   # a database from bench/investigations/seed.ts
 *   node --import tsx bench/investigations/explain.ts --messages 2000000           # seeds a fresh one, dropped after
 *   … --plans                                                       # also print the plans
 *
 * The batch is the bench's shape under load: 50 senders, 4 messages each (200) into 50
 * direct conversations that already hold messages; receipts for 200 of them. The plain
 * append also with the same senders writing to 50 new peers (first contacts).
 */
import { Command } from "commander";
import { Client } from "pg";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareValue } = require("pg/lib/utils") as { prepareValue(v: unknown): unknown };
import { v7 as uuidv7 } from "uuid";
import { createTestDatabase } from "../../test/helpers/database";
import { createDatabase } from "../../src/storage/database";
import { INSERT_USERS, SqlMessageStore } from "../../src/storage/SqlMessageStore";
import { BACKLOG_PAGES } from "../../src/storage/messageReads";
import { RECEIPT } from "../../src/storage/receipts";
import { FIND_STORED } from "../../src/storage/append/reads";
import { plainValues, WRITE, WRITE_PLAIN, writeValues } from "../../src/storage/append/writeStatement";
import type { BatchRow } from "../../src/storage/append/batchPlan";
import { directKey } from "../../src/messaging/routing";
import type { Statement } from "../../src/storage/prepared";
import { migratedDatabase } from "../lib/ticks";
import { seedHistory } from "../lib/seed";

const PAIRS = 50;
const PER_SENDER = 4;
const TTL = 30 * 24 * 3600 * 1000;

type Measured = {
  planningMs: number;
  executionMs: number;
  /** The fastest run's execution: on a shared machine, the closest to the statement's own cost. */
  minExecutionMs: number;
  triggersMs: number;
  buffers: number;
  clientMs: number;
  plan: string[];
};

function sumBuffers(node: Record<string, unknown>): number {
  return ((node["Shared Hit Blocks"] as number) ?? 0) + ((node["Shared Read Blocks"] as number) ?? 0);
}

/** PREPARE with the statement's own text; EXPLAIN ANALYZE EXECUTE it, rolled back. */
async function explain(c: Client, stmt: Statement, types: string[], values: () => unknown[], reps: number): Promise<Measured> {
  await c.query("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off");
  await c.query(`PREPARE ${stmt.name}_x (${types.join(", ")}) AS ${stmt.text}`);
  // EXECUTE takes its arguments as literals (a utility statement has no parameters).
  const args = () =>
    values()
      .map((v, i) => `${c.escapeLiteral(String(prepareValue(v)))}::${types[i]}`)
      .join(", ");
  const runs: Measured[] = [];
  try {
    for (let r = 0; r < reps; r++) {
      await c.query("BEGIN");
      const { rows } = await c.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE ${stmt.name}_x(${args()})`);
      await c.query("ROLLBACK");
      const p = (rows[0] as { "QUERY PLAN": Record<string, unknown>[] })["QUERY PLAN"][0]!;
      const triggers = (p.Triggers as { "Trigger Name": string; Time: number; Calls: number }[] | undefined) ?? [];
      await c.query("BEGIN");
      const { rows: text } = await c.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE ${stmt.name}_x(${args()})`);
      await c.query("ROLLBACK");
      await c.query("BEGIN");
      const t0 = performance.now();
      await c.query(`EXECUTE ${stmt.name}_x(${args()})`);
      const clientMs = performance.now() - t0;
      await c.query("ROLLBACK");
      runs.push({
        planningMs: p["Planning Time"] as number,
        executionMs: p["Execution Time"] as number,
        minExecutionMs: p["Execution Time"] as number,
        triggersMs: triggers.reduce((s, t) => s + t.Time, 0),
        buffers: sumBuffers(p.Plan as Record<string, unknown>),
        clientMs,
        plan: [
          ...text.map((t) => (t as { "QUERY PLAN": string })["QUERY PLAN"]),
          ...triggers.map((t) => `Trigger ${t["Trigger Name"]}: ${t.Time.toFixed(3)} ms, ${t.Calls} calls`),
        ],
      });
    }
  } catch (err) {
    await c.query("ROLLBACK");
    throw err;
  } finally {
    await c.query(`DEALLOCATE ${stmt.name}_x`);
  }
  runs.sort((a, b) => a.executionMs - b.executionMs);
  return { ...runs[Math.floor(runs.length / 2)]!, minExecutionMs: runs[0]!.executionMs };
}

async function main(): Promise<void> {
  const o = new Command()
    .option("--url <url>", "a seeded database (bench/investigations/seed.ts); default: a fresh one seeded here and dropped")
    .option("--messages <n>", "messages to seed when no --url", Number, 2_000_000)
    .option("--reps <n>", "runs per statement (the median is shown)", Number, 7)
    .option("--plans", "print each plan")
    .parse()
    .opts<{ url?: string; messages: number; reps: number; plans?: boolean }>();
  const fresh = o.url ? null : await createTestDatabase();
  const url = o.url ?? fresh!.url;
  try {
    if (fresh) {
      await migratedDatabase(url);
      await seedHistory(url, { messages: o.messages, conversations: 50_000, contentSize: 100, log: (l) => console.error(l) });
    }
    // The bench's pairs, each with a conversation and 100 messages, through the real write path.
    const tag = `x${Date.now().toString(36)}`;
    const knex = createDatabase({ kind: "postgres", url });
    const store = new SqlMessageStore(knex);
    const send = (i: number, n: number) =>
      store.append({
        id: uuidv7(),
        from: `${tag}-s${i}`,
        clientMsgId: `warm-${n}`,
        kind: "text",
        media: null,
        target: { to: `${tag}-r${i}` },
        content: "x".repeat(100),
        createdAt: new Date(),
        expiresAt: new Date(Date.now() + TTL),
      });
    for (let n = 0; n < 100; n++) await Promise.all(Array.from({ length: PAIRS }, (_, i) => send(i, n)));
    await knex.destroy();

    const c = new Client({ connectionString: url });
    await c.connect();
    const { rows: count } = await c.query<{ n: string }>("SELECT count(*) AS n FROM messages");
    console.log(`database: ${count[0]!.n} messages; batch: ${PAIRS} senders × ${PER_SENDER} = ${PAIRS * PER_SENDER} messages`);
    let k = 0;
    // `peer` "n": recipients no conversation exists with (each run is rolled back): first contacts.
    const batch = (peer = "r"): BatchRow[] => {
      const rows: BatchRow[] = [];
      for (let j = 0; j < PER_SENDER; j++) {
        for (let i = 0; i < PAIRS; i++) {
          const from = `${tag}-s${i}`;
          const to = `${tag}-${peer}${i}`;
          const at = new Date();
          rows.push({
            index: rows.length,
            req: { id: uuidv7(), from, clientMsgId: `m-${k++}`, kind: "text", media: null, target: { to }, content: "x".repeat(100), createdAt: at, expiresAt: new Date(at.getTime() + TTL) },
            accept: true,
            conversationId: null,
            directKey: directKey(from, to),
            to,
            content: "x".repeat(100),
            expiresAt: new Date(at.getTime() + TTL),
            refId: null,
          });
        }
      }
      return rows;
    };
    const { rows: recent } = await c.query<{ message_id: string; recipient_id: string }>(
      `SELECT d.message_id, d.recipient_id FROM message_delivery d JOIN messages m USING (message_id)
       WHERE m.from_user_id LIKE $1 ORDER BY m.created_at DESC LIMIT ${PAIRS * PER_SENDER}`,
      [`${tag}-s%`],
    );
    // Receipts flip 'sent' rows: put them back to 'sent' before each run (outside the timed part, rolled back anyway).
    await c.query(`UPDATE message_delivery SET status = 'sent', delivered_at = NULL WHERE message_id = ANY($1::uuid[])`, [recent.map((r) => r.message_id)]);
    const receipts = () => [recent.map((r) => r.recipient_id), recent.map((r) => r.message_id), recent.map(() => new Date().toISOString())];

    const results: [string, Measured][] = [];
    results.push(["append (write, 200 messages)", await explain(c, WRITE, ["uuid[]", "text[]", "text[]", "uuid[]", "text[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]", "bool[]", "text[]", "uuid[]", "uuid[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]", "jsonb[]", "uuid[]", "uuid[]", "bigint[]", "jsonb[]", "uuid[]"], () => writeValues(batch()), o.reps)]);
    // What the server runs for this batch (text to direct conversations): the plain statement.
    results.push(["append_plain (the same batch)", await explain(c, WRITE_PLAIN, ["uuid[]", "text[]", "text[]", "uuid[]", "text[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]", "bool[]", "text[]", "uuid[]"], () => plainValues(batch()), o.reps)]);
    // The same, to 50 new pairs: the statement creates their conversations (writeParts.ts, CREATED).
    results.push(["append_plain (first contacts)", await explain(c, WRITE_PLAIN, ["uuid[]", "text[]", "text[]", "uuid[]", "text[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]", "bool[]", "text[]", "uuid[]"], () => plainValues(batch("n")), o.reps)]);
    results.push(["mark_delivered (200 receipts)", await explain(c, RECEIPT.delivered, ["text[]", "uuid[]", "timestamptz[]"], receipts, o.reps)]);
    const probe = () => {
      const rows = batch();
      return [rows.map((r) => r.req.from), rows.map((r) => r.req.clientMsgId)];
    };
    results.push(["find_stored (200 pairs; groups)", await explain(c, FIND_STORED, ["text[]", "text[]"], probe, o.reps)]);
    // A seeded user with a long history (all of it read but ~2 %): the first backlog page;
    // then 64 connects at once (the batch), that user among 63 seeded ones.
    results.push(["backlog (page of 101)", await explain(c, BACKLOG_PAGES, ["text[]", "timestamptz", "int", "text[]"], () => [["hist000001"], new Date().toISOString(), 101, []], o.reps)]);
    const crowd = Array.from({ length: 64 }, (_, i) => `hist${String(i + 1).padStart(6, "0")}`);
    results.push(["backlog_pages (64 connects)", await explain(c, BACKLOG_PAGES, ["text[]", "timestamptz", "int", "text[]"], () => [crowd, new Date().toISOString(), 101, []], o.reps)]);
    let u = 0;
    const users = () => [Array.from({ length: 200 }, () => `${tag}-new-${u++}`).sort()];
    results.push(["insert_users (200 connects)", await explain(c, INSERT_USERS, ["text[]"], users, o.reps)]);
    await c.end();

    const head = ["planning ms", "exec ms", "min exec ms", "FK trig ms", "buffers", "client ms"];
    console.log(`\nmedians of ${o.reps} runs\n${"statement".padEnd(32)} ${head.map((h) => h.padStart(11)).join(" ")}`);
    for (const [name, m] of results) {
      const cells = [m.planningMs.toFixed(3), m.executionMs.toFixed(2), m.minExecutionMs.toFixed(2), m.triggersMs.toFixed(2), String(m.buffers), m.clientMs.toFixed(2)];
      console.log(`${name.padEnd(32)} ${cells.map((c) => c.padStart(11)).join(" ")}`);
    }
    if (o.plans) for (const [name, m] of results) console.log(`\n== ${name}\n${m.plan.join("\n")}`);
  } finally {
    await fresh?.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
