/**
 * Blocks a database read from outside shared_buffers (the OS cache or the disk) over a
 * phase, in all and by relation (pg_statio_all_tables / _indexes). A database whose
 * working set outgrows shared_buffers reads more, and evicts more dirty buffers, whose
 * writes then share the disk with the WAL's fsyncs: what a history side may pay that an
 * empty side does not.
 */
import { Client } from "pg";

type Snapshot = { read: number; hit: number; relations: Map<string, number> };
export type BufferReads = { database: string; read: number; hit: number; top: { relation: string; read: number }[] };

async function snapshot(url: string): Promise<Snapshot> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const db = await c.query<{ read: string; hit: string }>(
      "SELECT blks_read AS read, blks_hit AS hit FROM pg_stat_database WHERE datname = current_database()",
    );
    const rel = await c.query<{ name: string; read: string }>(
      `SELECT relname AS name, coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0) AS read
       FROM pg_statio_user_tables`,
    );
    return {
      read: Number(db.rows[0]!.read),
      hit: Number(db.rows[0]!.hit),
      relations: new Map(rel.rows.map((r) => [r.name, Number(r.read)])),
    };
  } finally {
    await c.end();
  }
}

export class BufferReadCounter {
  private constructor(private readonly url: string, private readonly before: Snapshot) {}

  static async start(url: string): Promise<BufferReadCounter> {
    // Statistics reach the shared counters when a backend goes idle: these are as of the last idle moment.
    return new BufferReadCounter(url, await snapshot(url));
  }

  async stop(): Promise<BufferReads> {
    const after = await snapshot(this.url);
    const top = [...after.relations]
      .map(([relation, read]) => ({ relation, read: read - (this.before.relations.get(relation) ?? 0) }))
      .filter((r) => r.read > 0)
      .sort((a, b) => b.read - a.read)
      .slice(0, 5);
    return { database: new URL(this.url).pathname.slice(1), read: after.read - this.before.read, hit: after.hit - this.before.hit, top };
  }
}

export function bufferReadNote(phase: string, label: string, r: BufferReads, messages: number): string {
  const per = messages > 0 ? r.read / messages : 0;
  const hitRatio = r.read + r.hit > 0 ? (100 * r.hit) / (r.read + r.hit) : 100;
  return (
    `${phase} reads outside shared_buffers, ${label}: ${r.read.toLocaleString("en-US")} blocks (${per.toFixed(2)} per message, ` +
    `${hitRatio.toFixed(2)} % hits)${r.top.length ? `; ${r.top.map((t) => `${t.relation} ${t.read.toLocaleString("en-US")}`).join(", ")}` : ""}`
  );
}
