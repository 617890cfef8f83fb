import type { Knex } from "knex";
import type { PartitionReport } from "../messaging/ports";
import { rowsOf, toNumber } from "./rows";

/**
 * The day partitions of `messages` and `message_delivery` (docs/storage.md): both tables
 * are range-partitioned on message_id (a UUIDv7, whose first 48 bits are its creation time
 * in ms) with the same bounds, so a day's messages and delivery rows come and go together.
 * Run by the expiry sweep, on one node at a time. Every round reads the partitions from
 * the catalogue (nothing is remembered that an operator's hand could make wrong), then:
 *
 * - creates the partitions of today and the next AHEAD_DAYS days that do not exist, moving
 *   any rows the DEFAULT partition caught for their range into them (a write never waits
 *   for a partition: ids outside every range land in DEFAULT);
 * - drops a past partition (its upper bound before now) once none of its rows is still
 *   live (expires_at > now, checked, not assumed: entries carry their target's expiry),
 *   with its delivery twin and its pending pushes;
 * - reports what an operator's hand changed: a twin without its other half (dropped too),
 *   or a partition this process saw whose range was not yet over (so not the sweep's doing).
 *
 * Each change is its own short transaction under lock_timeout, and locks ONE of the two
 * tables: a busy table makes the round skip it (the next round tries again) rather than hold
 * the hot path behind a queued lock. Never both at once: readers lock them in either order
 * (a backlog page message_delivery first, a write messages first), and an exclusive lock
 * held on one while waiting for the other deadlocks with such a reader.
 */
export const DAY_MS = 86_400_000;
export const AHEAD_DAYS = 3;
const TABLES = ["messages", "message_delivery"] as const;
type Table = (typeof TABLES)[number];
// Every statement of the hot path that reaches a table queues behind a lock requested on it:
// a short wait, retried next round, bounds that queue (2 s stalled every send for as long).
const LOCK_TIMEOUT = "250ms";
const LOCK_NOT_AVAILABLE = "55P03";

type Partition = { table: Table; name: string; isDefault: boolean; lo: number; hi: number; loId: string | null; hiId: string | null };

/** The smallest UUIDv7 of this millisecond: 48-bit time, everything else zero. */
export function uuidBound(ms: number): string {
  const hex = Math.floor(ms).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** The millisecond a UUIDv7 (or a bound) was stamped with. */
export const msOfUuid = (id: string): number => parseInt(id.replace(/-/g, "").slice(0, 12), 16);

const BOUND = /FROM \((MINVALUE|'([0-9a-f-]{36})')\) TO \((MAXVALUE|'([0-9a-f-]{36})')\)/;

export async function listPartitions(db: Knex): Promise<Partition[]> {
  const rows = rowsOf<{ parent: Table; name: string; bound: string }>(
    await db.raw(
      `SELECT p.relname AS parent, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
       WHERE p.relname IN ('messages', 'message_delivery') AND p.relnamespace = current_schema()::regnamespace`,
    ),
  );
  return rows.map((r) => {
    const m = BOUND.exec(r.bound);
    const loId = m?.[2] ?? null;
    const hiId = m?.[4] ?? null;
    return {
      table: r.parent,
      name: r.name,
      isDefault: !m,
      loId,
      hiId,
      lo: loId ? msOfUuid(loId) : -Infinity,
      hi: hiId ? msOfUuid(hiId) : Infinity,
    };
  });
}

const rangeKey = (p: Partition) => `${p.loId}|${p.hiId}`;
/** Told the range of a twin pair left with one half (the other's lock was busy). */
type HalfDone = (rangeKey: string) => void;
const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

function partitionName(table: Table, from: number): string {
  const iso = new Date(from).toISOString();
  const day = iso.slice(0, 10).replace(/-/g, "");
  const time = iso.slice(11, 23).replace(/[:.]/g, "");
  return from % DAY_MS === 0 ? `${table}_p${day}` : `${table}_p${day}_${time}`;
}

/** The uncovered pieces of [from, to) given the ranges that exist. */
function gaps(from: number, to: number, covered: Partition[]): [number, number][] {
  const pieces: [number, number][] = [];
  let at = from;
  for (const p of [...covered].sort((a, b) => a.lo - b.lo)) {
    if (p.hi <= at || p.lo >= to) continue;
    if (p.lo > at) pieces.push([at, p.lo]);
    at = Math.max(at, p.hi);
    if (at >= to) break;
  }
  if (at < to) pieces.push([at, to]);
  return pieces;
}

async function inTransaction<T>(db: Knex, work: (trx: Knex.Transaction) => Promise<T>): Promise<T | null> {
  try {
    return await db.transaction(async (trx) => {
      await trx.raw(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      return work(trx);
    });
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) return null;
    throw err;
  }
}

/**
 * Creates [from, to) for these tables, one transaction each (messages first: until the
 * delivery twin exists, the range's delivery rows wait in DEFAULT and are moved with it): a
 * table of the parent's shape, filled with what DEFAULT caught for the range, then attached
 * (ATTACH takes a lighter lock on the parent than CREATE ... PARTITION OF, but an exclusive
 * one on DEFAULT). Returns how many messages came out of DEFAULT, null if a lock was busy.
 */
async function createRange(
  db: Knex,
  tables: readonly Table[],
  from: number,
  to: number,
  onHalfDone: HalfDone = () => {},
): Promise<number | null> {
  const [lo, hi] = [uuidBound(from), uuidBound(to)];
  let moved = 0;
  for (const table of tables) {
    const done = await inTransaction(db, async (trx) => {
      const name = quote(partitionName(table, from));
      await trx.raw(`CREATE TABLE ${name} (LIKE ${table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
      if (table === "messages") await trx.raw(`CREATE UNIQUE INDEX ${quote(`${partitionName(table, from)}_conversation_seq`)} ON ${name} (conversation_id, seq)`);
      const rows = rowsOf<{ n: unknown }>(
        await trx.raw(
          `WITH moved AS (DELETE FROM ${table}_default WHERE message_id >= ? AND message_id < ? RETURNING *),
             ins AS (INSERT INTO ${name} SELECT * FROM moved RETURNING 1)
           SELECT count(*) AS n FROM ins`,
          [lo, hi],
        ),
      );
      if (table === "messages") moved = toNumber(rows[0]?.n as number);
      await trx.raw(`ALTER TABLE ${table} ATTACH PARTITION ${name} FOR VALUES FROM ('${lo}') TO ('${hi}')`);
      return true;
    });
    if (done === null) {
      if (table !== tables[0]) onHalfDone(`${lo}|${hi}`);
      return null;
    }
  }
  return moved;
}

const defaultHolds = async (db: Knex, from: number, to: number): Promise<boolean> =>
  rowsOf<{ any: boolean }>(
    await db.raw(`SELECT EXISTS (SELECT 1 FROM messages_default WHERE message_id >= ? AND message_id < ?) AS any`, [uuidBound(from), uuidBound(to)]),
  )[0]!.any;

const anyLive = async (q: Knex, name: string, now: Date): Promise<boolean> =>
  rowsOf<{ live: boolean }>(await q.raw(`SELECT EXISTS (SELECT 1 FROM ${quote(name)} WHERE expires_at > ?) AS live`, [now]))[0]!.live;

/**
 * Drops a messages partition once no row in it is live, then its delivery twin. Checked
 * first without locks (the BRIN index on expires_at skips the expired ranges), and again
 * under the exclusive lock on messages: a node whose clock lags could have written a row
 * into the range meanwhile, and that row is live. The twin goes in a transaction of its
 * own (see the class comment); if it cannot, the next round drops it as an orphan. Returns
 * the messages dropped, or null when it did not drop.
 */
async function dropIfExpired(
  db: Knex,
  part: Partition,
  twin: Partition | undefined,
  now: Date,
  onHalfDone: HalfDone,
): Promise<number | null> {
  if (await anyLive(db, part.name, now)) return null;
  const count = toNumber(rowsOf<{ n: unknown }>(await db.raw(`SELECT count(*) AS n FROM ${quote(part.name)}`))[0]!.n as number);
  const dropped = await inTransaction(db, async (trx) => {
    await trx.raw(`LOCK TABLE messages IN ACCESS EXCLUSIVE MODE`);
    if (await anyLive(trx, part.name, now)) return null;
    // Pending pushes of these messages (push_outbox has no cascade from a partitioned table).
    await trx.raw(
      `DELETE FROM push_outbox WHERE message_id >= coalesce(?::uuid, '00000000-0000-0000-0000-000000000000') AND message_id < ?::uuid`,
      [part.loId, part.hiId],
    );
    await trx.raw(`DROP TABLE ${quote(part.name)}`);
    return count;
  });
  if (dropped !== null && twin && (await dropTable(db, twin.name)) === null) onHalfDone(rangeKey(part));
  return dropped;
}

/** A partition of one table: DROP locks its parent exclusively, and nothing else. */
const dropTable = (db: Knex, name: string) => inTransaction(db, (trx) => trx.raw(`DROP TABLE ${quote(name)}`));

/**
 * A partition for every day of [from, to) that none covers (a piece of a day where a
 * partition covers the rest), moving in what DEFAULT caught for it. Used by the sweep for
 * today and the days ahead, and by bench/lib/seed.ts for a seeded history.
 */
export async function ensureDays(
  db: Knex,
  from: number,
  to: number,
  o: { parts?: Partition[]; onHalfDone?: HalfDone; now?: number } = {},
): Promise<{ created: string[]; moved: number }> {
  const existing = (o.parts ?? (await listPartitions(db))).filter((p) => p.table === "messages" && !p.isDefault);
  const made = { created: [] as string[], moved: 0 };
  for (const [start, end] of gaps(from, to, existing)) {
    // One partition per day, however the gap is cut.
    for (let at = start; at < end; ) {
      const stop = Math.min(end, Math.floor(at / DAY_MS) * DAY_MS + DAY_MS);
      // A piece already over (today before a migration's cut, or before a dropped partition)
      // only for rows DEFAULT caught: empty, the drop below would take it again at once,
      // two exclusive locks every round.
      if (o.now !== undefined && stop <= o.now && !(await defaultHolds(db, at, stop))) {
        at = stop;
        continue;
      }
      const moved = await createRange(db, TABLES, at, stop, o.onHalfDone);
      if (moved !== null) {
        made.created.push(partitionName("messages", at));
        made.moved += moved;
      }
      at = stop;
    }
  }
  return made;
}

export class SqlPartitions {
  /** Partitions this process saw last round, by name, with their upper bound. */
  private seen = new Map<string, number>();
  /** Twins this process left half done (a lock was busy): finishing them is no operator's doing. */
  private readonly halfDone = new Set<string>();
  private readonly onHalfDone: HalfDone = (key) => void this.halfDone.add(key);

  constructor(private readonly db: Knex) {}

  async maintain(now: Date): Promise<PartitionReport> {
    const report: PartitionReport = { created: [], dropped: [], handDropped: [], movedFromDefault: 0 };
    let parts = await listPartitions(this.db);
    const nowMs = now.getTime();

    // What disappeared although its range was not over: not the sweep's doing.
    const names = new Set(parts.map((p) => p.name));
    for (const [name, hi] of this.seen) if (!names.has(name) && hi > nowMs) report.handDropped.push(name);

    for (const table of TABLES) {
      if (!parts.some((p) => p.table === table && p.isDefault)) {
        await this.db.raw(`CREATE TABLE ${table}_default PARTITION OF ${table} DEFAULT`);
        if (table === "messages") await this.db.raw(`CREATE UNIQUE INDEX messages_default_conversation_seq ON messages_default (conversation_id, seq)`);
        report.handDropped.push(`${table}_default`);
        report.created.push(`${table}_default`);
      }
    }

    // Twins: a range in one table only lost its other half by hand.
    const ranged = parts.filter((p) => !p.isDefault);
    const messageRanges = new Map(ranged.filter((p) => p.table === "messages").map((p) => [rangeKey(p), p]));
    const deliveryRanges = new Map(ranged.filter((p) => p.table === "message_delivery").map((p) => [rangeKey(p), p]));
    for (const [key, d] of deliveryRanges) {
      if (messageRanges.has(key)) continue;
      // Its messages are gone: so are their delivery rows.
      if (!this.halfDone.delete(key)) report.handDropped.push(d.name.replace(/^message_delivery/, "messages"));
      if ((await dropTable(this.db, d.name)) === null) this.halfDone.add(key);
    }
    for (const [key, m] of messageRanges) {
      if (deliveryRanges.has(key) || !m.loId || !m.hiId) continue;
      if (!this.halfDone.delete(key)) report.handDropped.push(m.name.replace(/^messages/, "message_delivery"));
      if ((await createRange(this.db, ["message_delivery"], m.lo, m.hi)) !== null) report.created.push(partitionName("message_delivery", m.lo));
      else this.halfDone.add(key);
    }

    // Today and the days ahead.
    const today = Math.floor(nowMs / DAY_MS) * DAY_MS;
    const made = await ensureDays(this.db, today, today + (AHEAD_DAYS + 1) * DAY_MS, { parts, onHalfDone: this.onHalfDone, now: nowMs });
    report.created.push(...made.created);
    report.movedFromDefault += made.moved;
    parts = await listPartitions(this.db);

    // Past partitions whose rows all expired.
    const delivery = new Map(parts.filter((p) => p.table === "message_delivery" && !p.isDefault).map((p) => [rangeKey(p), p]));
    for (const part of parts.filter((p) => p.table === "messages" && !p.isDefault && p.hi <= nowMs)) {
      const dropped = await dropIfExpired(this.db, part, delivery.get(rangeKey(part)), now, this.onHalfDone);
      if (dropped !== null) report.dropped.push({ name: part.name, messages: dropped });
    }

    const final = await listPartitions(this.db);
    this.seen = new Map(final.filter((p) => !p.isDefault).map((p) => [p.name, p.hi]));
    return report;
  }
}
