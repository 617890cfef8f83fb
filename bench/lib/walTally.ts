/**
 * Which relations a stretch of WAL was written for, and how much of it was full-page
 * images: `pg_waldump --follow` from a start position, each record counted against the
 * first block it references (database, relfilenode), until `stop()` has read past the end
 * position. pg_stat_wal gives the server's totals only; this splits them by database (the
 * history scenario's two sides are two databases on one server) and by table or index.
 *
 * Needs read access to the server's pg_wal (root, or the postgres user) and the server's
 * own pg_waldump (PG_BIN, default /usr/lib/postgresql/15/bin; PG_WAL_DIR, default
 * /var/lib/postgresql/15/main/pg_wal). Records are counted as they stream, never kept.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { Client } from "pg";

const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
const WAL_DIR = process.env.PG_WAL_DIR ?? "/var/lib/postgresql/15/main/pg_wal";

export type RelationWal = { database: string; relation: string; records: number; bytes: number; fpi: number; fpiBytes: number };
export type WalTallyResult = { records: number; bytes: number; fpi: number; byRelation: RelationWal[]; error?: string };

type Count = { records: number; bytes: number; fpi: number; fpiBytes: number };

/** "0/1A2B3C4D" as a number of bytes. */
export function lsnBytes(lsn: string): number {
  const [hi, lo] = lsn.split("/");
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}

// rmgr: Btree len (rec/tot): 64/ 8220, tx: 745, lsn: 0/0157A1E8, prev …, desc: …, blkref #0: rel 1663/5/2662 blk 2 FPW
const RECORD = /len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+\/[0-9A-F]+)/;
const BLOCK = /blkref #\d+: rel (\d+)\/(\d+)\/(\d+)(?: fork \w+)? blk \d+( FPW)?/g;

export class WalTally {
  private readonly counts = new Map<string, Count>();
  private readonly total = { records: 0, bytes: 0, fpi: 0 };
  private lastLsn = 0;
  private error = "";
  private readonly done: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => this.count(line));
    child.stderr!.on("data", (d: Buffer) => (this.error += d.toString()));
    this.done = new Promise((resolve) => child.on("close", () => resolve()));
  }

  /** Starts reading at the server's current WAL position. */
  static async start(adminUrl: string): Promise<WalTally> {
    const c = new Client({ connectionString: adminUrl });
    await c.connect();
    try {
      // pg_waldump starts at the first record after --start, which must already be on disk:
      // write one (a non-transactional logical message) and give the WAL writer time to write it.
      const { rows } = await c.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
      await c.query("SELECT pg_logical_emit_message(false, 'walTally', 'start')");
      await new Promise((r) => setTimeout(r, 500));
      const child = spawn(path.join(PG_BIN, "pg_waldump"), ["--follow", `--path=${WAL_DIR}`, `--start=${rows[0]!.lsn}`], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      return new WalTally(child);
    } finally {
      await c.end();
    }
  }

  private count(line: string): void {
    const m = RECORD.exec(line);
    if (!m) return;
    this.lastLsn = lsnBytes(m[3]!);
    const rec = Number(m[1]);
    const tot = Number(m[2]);
    this.total.records++;
    this.total.bytes += tot;
    let first: string | null = null;
    let fpis = 0;
    for (const b of line.matchAll(BLOCK)) {
      first ??= `${b[2]}/${b[3]}`;
      if (b[4]) fpis++;
    }
    this.total.fpi += fpis;
    const key = first ?? "-";
    const c = this.counts.get(key) ?? { records: 0, bytes: 0, fpi: 0, fpiBytes: 0 };
    c.records++;
    c.bytes += tot;
    c.fpi += fpis;
    // The images are what the record's total holds beyond its own data.
    if (fpis > 0) c.fpiBytes += tot - rec;
    this.counts.set(key, c);
  }

  /** Reads up to the server's current position, stops, names the relations (top `limit` by bytes). */
  async stop(adminUrl: string, limit = 12): Promise<WalTallyResult> {
    const c = new Client({ connectionString: adminUrl });
    await c.connect();
    try {
      // The switch record lands at or after `end`, so reading past `end` means everything before it was counted.
      const end = lsnBytes((await c.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn")).rows[0]!.lsn);
      await c.query("SELECT pg_switch_wal()");
      const deadline = Date.now() + 60_000;
      while (this.lastLsn < end && Date.now() < deadline && this.child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 200));
      }
      this.child.kill("SIGTERM");
      await this.done;
      const databases = new Map(
        (await c.query<{ oid: string; datname: string }>("SELECT oid::text, datname FROM pg_database")).rows.map((r) => [r.oid, r.datname]),
      );
      const top = [...this.counts].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, limit);
      const byRelation: RelationWal[] = [];
      for (const [key, count] of top) {
        const [dbOid, node] = key.split("/");
        const database = key === "-" ? "-" : dbOid === "0" ? "(shared)" : (databases.get(dbOid!) ?? `oid ${dbOid}`);
        byRelation.push({ database, relation: await relationName(database, node, adminUrl), ...count });
      }
      const error = this.error.trim() && !/terminated|SIGTERM/.test(this.error) ? this.error.trim().slice(0, 300) : undefined;
      return { ...this.total, byRelation, ...(error ? { error } : {}) };
    } finally {
      await c.end();
    }
  }
}

/** The relation a relfilenode belongs to, looked up in its own database. */
async function relationName(database: string, node: string | undefined, adminUrl: string): Promise<string> {
  if (!node || database === "-") return "(no block: commit records and the like)";
  if (database.startsWith("(") || database.startsWith("oid ")) return `relfilenode ${node}`;
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const c = new Client({ connectionString: url.toString() });
  try {
    await c.connect();
    const { rows } = await c.query<{ name: string | null }>("SELECT pg_filenode_relation(0, $1::oid)::regclass::text AS name", [node]);
    return rows[0]?.name ?? `relfilenode ${node}`;
  } catch {
    return `relfilenode ${node}`;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Per side (a database and the messages it acknowledged meanwhile): WAL and full-page images per message, top relations. */
export function walNotes(phase: string, result: WalTallyResult, sides: { label: string; database: string; messages: number }[]): string[] {
  const lines = [
    `${phase} WAL (pg_waldump, whole server): ${(result.bytes / 2 ** 20).toFixed(1)} MB in ${result.records.toLocaleString("en-US")} records, ` +
      `${result.fpi.toLocaleString("en-US")} full-page images${result.error ? `; pg_waldump: ${result.error}` : ""}`,
  ];
  for (const side of sides) {
    const rels = result.byRelation.filter((r) => r.database === side.database);
    const bytes = rels.reduce((n, r) => n + r.bytes, 0);
    const fpi = rels.reduce((n, r) => n + r.fpi, 0);
    const per = (n: number) => (side.messages > 0 ? n / side.messages : 0);
    lines.push(
      `${phase} WAL, ${side.label} (${side.messages.toLocaleString("en-US")} messages): ${per(bytes).toFixed(0)} bytes and ` +
        `${per(fpi).toFixed(3)} full-page images per message (of the relations listed); ` +
        rels
          .slice(0, 6)
          .map((r) => `${r.relation} ${per(r.bytes).toFixed(0)} B/msg (${r.bytes > 0 ? Math.round((100 * r.fpiBytes) / r.bytes) : 0} % images)`)
          .join(", "),
    );
  }
  return lines;
}
