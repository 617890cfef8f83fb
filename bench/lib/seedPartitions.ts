/**
 * The seed on a partitioned schema (migration 20261202130000: `messages` and
 * `message_delivery` range-partitioned by day on message_id, src/storage/partitions.ts):
 * before the rows go in, every day they fall on gets its partition in both tables, made by
 * the sweep's own ensureDays() (src/storage/partitions.ts), so the seeded
 * database looks like one that ran the partitioned schema through those days.
 *
 * A freshly migrated database has an (empty) legacy partition from MINVALUE to the
 * migration's instant, which covers every past day: an empty partition in the way is
 * dropped with its twin; one that holds rows stops the seed.
 */
import type { Client } from "pg";
import { DAY_MS, ensureDays, listPartitions } from "../../src/storage/partitions";
import { createDatabase } from "../../src/storage/database";

export async function isPartitioned(c: Client): Promise<boolean> {
  const { rows } = await c.query<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = to_regclass('messages')`);
  return rows[0]?.kind === "p";
}

/** Day partitions covering [fromMs, toMs) in both tables; returns the names created. */
export async function ensureDayPartitions(c: Client, url: string, fromMs: number, toMs: number): Promise<string[]> {
  const knex = createDatabase({ kind: "postgres", url });
  let parts: Awaited<ReturnType<typeof listPartitions>>;
  try {
    parts = (await listPartitions(knex)).filter((p) => !p.isDefault);
  } finally {
    await knex.destroy();
  }
  const from = Math.floor(fromMs / DAY_MS) * DAY_MS;
  const to = Math.ceil(toMs / DAY_MS) * DAY_MS;
  for (const p of parts.filter((p) => p.table === "messages" && p.lo < to && p.hi > from && (p.lo < from || p.hi > to) && p.lo === -Infinity)) {
    const { rows } = await c.query<{ n: string }>(`SELECT count(*) AS n FROM (SELECT 1 FROM "${p.name}" LIMIT 1) x`);
    if (Number(rows[0]!.n) > 0) throw new Error(`seed: partition ${p.name} covers the seeded days and holds rows`);
    const twin: (typeof parts)[number] | undefined = parts.find((d) => d.table === "message_delivery" && d.loId === p.loId && d.hiId === p.hiId);
    await c.query(`DROP TABLE "${p.name}"${twin ? `, "${twin.name}"` : ""}`);
    parts = parts.filter((x) => x !== p && x !== twin);
  }
  // As the sweep makes the days it creates (src/storage/partitions.ts).
  const db = createDatabase({ kind: "postgres", url });
  try {
    return (await ensureDays(db, from, to)).created;
  } finally {
    await db.destroy();
  }
}

/**
 * What an operator's autovacuum would have vacuumed and analyzed (docs/storage.md,
 * "Statistics"): the plain tables and, of the partitioned ones, only the leaf partitions
 * that hold rows, by name. VACUUM or ANALYZE on a partitioned parent would recurse into the
 * empty partitions ahead (and the DEFAULT one) and record "0 rows" for them (reltuples 0),
 * which the hot path's cached generic plans then trust as those days fill; left alone
 * they keep reltuples -1, a table nobody has looked at yet, which the planner takes for at
 * least 10 pages.
 */
export async function tablesWithRows(c: Client, tables: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const t of tables) {
    const { rows } = await c.query<{ name: string; leaf: boolean }>(
      `SELECT relid::regclass::text AS name, isleaf AS leaf FROM pg_partition_tree($1::regclass)`,
      [t],
    );
    if (rows.length === 0) out.push(t); // a plain table: pg_partition_tree lists nothing
    for (const r of rows) {
      if (!r.leaf) continue;
      if (rows.length > 1 && (await c.query(`SELECT 1 FROM ${r.name} LIMIT 1`)).rowCount === 0) continue;
      out.push(r.name);
    }
  }
  return out;
}
