/**
 * What the whole PostgreSQL server was doing, every 100 ms, to explain a latency stall
 * after the fact (`npm run bench -- --scenarios history --pg-diagnostics`): every backend
 * that was not idle (any database: other sessions share the server), how long its
 * statement had been running and what it waited on, the checkpointer's counters and the
 * WAL position. `explain()` lines a stall episode of the load generator (LoadStats.stalls)
 * up with the samples and with the server log (checkpoints, statements over
 * log_min_duration_statement, auto_explain plans).
 */
import { existsSync, readFileSync } from "node:fs";
import { Client } from "pg";
import { sleep, type Stall } from "./stats";

export type Busy = { db: string | null; type: string; wait: string | null; ms: number; query: string };
export type Sample = { at: number; lsn: string; checkpoints: number; buffersCheckpoint: number; buffersBackendFsync: number; loadavg1: number; busy: Busy[] };

/** The server's log when it logs to Debian's default file (log_destination stderr, no collector). */
export const PG_LOG = process.env.PG_LOG_FILE ?? "/var/log/postgresql/postgresql-15-main.log";

export class PgTimeline {
  readonly samples: Sample[] = [];
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private logOffset = 0;

  private constructor(private readonly client: Client) {}

  static async start(adminUrl: string, intervalMs = 100): Promise<PgTimeline> {
    const client = new Client({ connectionString: adminUrl });
    await client.connect();
    const t = new PgTimeline(client);
    t.logOffset = existsSync(PG_LOG) ? readFileSync(PG_LOG).length : 0;
    t.loop = t.run(intervalMs);
    return t;
  }

  private async run(intervalMs: number): Promise<void> {
    while (!this.stopped) {
      try {
        const { rows } = await this.client.query<{ lsn: string; ck: string; bc: string; bf: string; busy: Busy[] | null }>(
          `SELECT pg_current_wal_lsn()::text AS lsn,
             (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS ck,
             (SELECT buffers_checkpoint FROM pg_stat_bgwriter) AS bc,
             (SELECT buffers_backend_fsync FROM pg_stat_bgwriter) AS bf,
             (SELECT json_agg(json_build_object('db', datname, 'type', backend_type,
                 'wait', wait_event_type || ':' || wait_event,
                 'ms', round(extract(epoch FROM clock_timestamp() - coalesce(query_start, backend_start)) * 1000),
                 'query', left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100)))
              FROM pg_stat_activity
              WHERE pid <> pg_backend_pid() AND (state IS NULL OR state NOT LIKE 'idle%')
                AND NOT (backend_type IN ('checkpointer', 'background writer', 'walwriter', 'logical replication launcher', 'autovacuum launcher')
                         AND wait_event IN ('CheckpointerMain', 'BgWriterMain', 'BgWriterHibernate', 'WalWriterMain', 'LogicalLauncherMain', 'AutoVacuumMain'))) AS busy`,
        );
        const r = rows[0]!;
        const load = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
        this.samples.push({ at: Date.now(), lsn: r.lsn, checkpoints: Number(r.ck), buffersCheckpoint: Number(r.bc), buffersBackendFsync: Number(r.bf), loadavg1: load, busy: r.busy ?? [] });
      } catch {
        // a failed sample is skipped
      }
      await sleep(intervalMs);
    }
  }

  /** Stops sampling; returns the server log written since start (empty if unreadable). */
  async stop(): Promise<string> {
    this.stopped = true;
    await this.loop;
    await this.client.end().catch(() => {});
    try {
      return readFileSync(PG_LOG).subarray(this.logOffset).toString("utf8");
    } catch {
      return "";
    }
  }

  /** WAL bytes between two samples' positions. */
  private static walBytes(a: string, b: string): number {
    const n = (l: string) => {
      const [hi, lo] = l.split("/");
      return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
    };
    return n(b) - n(a);
  }

  /**
   * One stall episode against the samples from 1 s before it to its end: the longest
   * statements seen running (any database), the wait events of Ticks' own backends
   * (`databases`), checkpoints in progress, WAL rate against the run's median, and the log
   * lines in that time.
   */
  explain(stall: Stall, databases: string[], log: string): string[] {
    const from = Date.parse(stall.from) - 1000;
    const to = Date.parse(stall.to) + 200;
    const inside = this.samples.filter((s) => s.at >= from && s.at <= to);
    if (inside.length < 2) return [`${stall.from}: no samples`];
    const waits = new Map<string, number>();
    const background = new Map<string, number>();
    const longest = new Map<string, Busy>();
    for (const s of inside) {
      for (const b of s.busy) {
        if (b.db && databases.includes(b.db) && b.type === "client backend") {
          const key = b.wait ?? "CPU";
          waits.set(key, (waits.get(key) ?? 0) + 1);
        }
        if (b.type !== "client backend" && !b.type.startsWith("autovacuum")) {
          const key = `${b.type} ${b.wait ?? "CPU"}`;
          background.set(key, (background.get(key) ?? 0) + 1);
          continue;
        }
        const key = `${b.db}|${b.type}|${b.query}`;
        if ((longest.get(key)?.ms ?? -1) < b.ms) longest.set(key, b);
      }
    }
    const rates: number[] = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1]!;
      const b = this.samples[i]!;
      rates.push(PgTimeline.walBytes(a.lsn, b.lsn) / ((b.at - a.at) / 1000));
    }
    rates.sort((x, y) => x - y);
    const median = rates[Math.floor(rates.length / 2)] ?? 0;
    const first = inside[0]!;
    const last = inside.at(-1)!;
    const rate = PgTimeline.walBytes(first.lsn, last.lsn) / ((last.at - first.at) / 1000);
    const top = [...longest.values()].sort((a, b) => b.ms - a.ms).slice(0, 4);
    const logLines = log
      .split("\n")
      .filter((l) => {
        const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC/.exec(l);
        if (!m) return false;
        const t = Date.parse(`${m[1]!.replace(" ", "T")}Z`);
        return t >= from - 2000 && t <= to + 2000 && /duration:|checkpoint|automatic|still waiting|acquired/.test(l);
      })
      .map((l) => l.slice(0, 220));
    return [
      `stall ${stall.from} → ${stall.to}: ${stall.sends} sends ≥ 100 ms, worst ack ${stall.worstAckMs} ms; load average ${first.loadavg1}`,
      `  Ticks backends (samples): ${[...waits].map(([k, v]) => `${k} ${v}`).join(", ") || "none busy"}`,
      `  server processes (samples): ${[...background].map(([k, v]) => `${k} ${v}`).join(", ") || "all idle"}`,
      `  WAL ${(rate / 2 ** 20).toFixed(1)} MB/s (run median ${(median / 2 ** 20).toFixed(1)}); checkpoints ${last.checkpoints - first.checkpoints}, buffers written by checkpoint ${last.buffersCheckpoint - first.buffersCheckpoint}`,
      ...top.map((b) => `  running ${b.ms} ms: [${b.db ?? "-"} ${b.type}${b.wait ? ` ${b.wait}` : ""}] ${b.query}`),
      ...logLines.slice(0, 12).map((l) => `  log: ${l}`),
    ];
  }
}
