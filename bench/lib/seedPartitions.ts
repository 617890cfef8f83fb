/**
 * The seed on a partitioned schema (migration 20261202130000: `messages` and
 * `message_delivery` range-partitioned by day on message_id, src/storage/partitions.ts):
 * before the rows go in, every day they fall on gets its partition in both tables, named
 * and indexed as the expiry sweep names and indexes the days it creates, so the seeded
 * database looks like one that ran the partitioned schema through those days.
 *
 * A freshly migrated database has an (empty) legacy partition from MINVALUE to the
 * migration's instant, which covers every past day: an empty partition in the way is
 * dropped with its twin; one that holds rows stops the seed.
 */
import type { Client } from "pg";
import { DAY_MS, listPartitions, uuidBound } from "../../src/storage/partitions";
import { createDatabase } from "../../src/storage/database";

export async function isPartitioned(c: Client): Promise<boolean> {
  const { rows } = await c.query<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = to_regclass('messages')`);
  return rows[0]?.kind === "p";
}

const dayName = (ms: number) => {
  const iso = new Date(ms).toISOString();
  const day = iso.slice(0, 10).replace(/-/g, "");
  return ms % DAY_MS === 0 ? day : `${day}_${iso.slice(11, 23).replace(/[:.]/g, "")}`;
};

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
  const covered = parts.filter((p) => p.table === "messages").sort((a, b) => a.lo - b.lo);
  const created: string[] = [];
  for (let at = from; at < to; ) {
    const inside = covered.find((p) => p.lo <= at && p.hi > at);
    if (inside) {
      at = inside.hi;
      continue;
    }
    const next = covered.find((p) => p.lo > at);
    const end = Math.min(Math.floor(at / DAY_MS) * DAY_MS + DAY_MS, next?.lo ?? Infinity, to);
    const [lo, hi] = [uuidBound(at), uuidBound(end)];
    for (const table of ["messages", "message_delivery"]) {
      // The migration names its partial first day by the day alone: a piece of that day before it gets the time too.
      const taken = (await c.query(`SELECT to_regclass($1) IS NOT NULL AS t`, [`${table}_p${dayName(at)}`])).rows[0].t as boolean;
      const name = `${table}_p${dayName(at)}${taken ? `_${new Date(at).toISOString().slice(11, 23).replace(/[:.]/g, "")}` : ""}`;
      await c.query(`CREATE TABLE ${name} PARTITION OF ${table} FOR VALUES FROM ('${lo}') TO ('${hi}')`);
      if (table === "messages") await c.query(`CREATE UNIQUE INDEX ON ${name} (conversation_id, seq)`);
      created.push(name);
    }
    at = end;
  }
  return created;
}
