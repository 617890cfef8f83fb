/**
 * Measured phases. Targets are measured in turn, interleaved round by round (A B A B …),
 * so a noisy neighbour that comes and goes on this shared machine hits both sides alike;
 * each target's rounds are then pooled into one result.
 */
import { Client } from "pg";
import { LoadGen, type AuthFor, type LoadStats, type Mode, type Window } from "./load";
import { cpuBetween, cpuSnapshot, scrapeMetrics, type Target } from "./procs";
import { sleep } from "./stats";

export type PhaseOptions = {
  pairs: number;
  inFlight: number;
  /** Warm-up before the first round's window; later rounds warm up for at most 1 s. */
  warmupMs: number;
  /** Measured time per target, split evenly over the rounds. */
  durationMs: number;
  rounds: number;
  drainMs: number;
  contentSize: number;
};

/** The phase settings of a run's options (seconds on the command line, ms here). */
export function phaseOptionsOf(o: {
  pairs: number;
  inFlight: number;
  warmupS: number;
  durationS: number;
  rounds: number;
  drainS: number;
  contentSize: number;
}): PhaseOptions {
  return {
    pairs: o.pairs,
    inFlight: o.inFlight,
    warmupMs: o.warmupS * 1000,
    durationMs: o.durationS * 1000,
    rounds: o.rounds,
    drainMs: o.drainS * 1000,
    contentSize: o.contentSize,
  };
}

/**
 * One side of a comparison. `batchMetrics`: read Ticks' group-commit histogram
 * (ticks_write_batch_size) around each window, to report the mean batch size.
 * `recipientUrl`: the recipients connect there instead of to the target's url.
 */
export type Contender = {
  target: Target;
  auth: AuthFor;
  probe?: DbProbe;
  tag: string;
  batchMetrics?: boolean;
  recipientUrl?: string;
};

export type PhaseResult = LoadStats & {
  target: string;
  rounds: number;
  /** Server process(es) CPU in the windows: ms, % of one core, ms per acknowledged message. */
  serverCpuMs: number;
  serverCpuPct: number;
  serverCpuMsPerMsg: number | null;
  /** PostgreSQL backends serving the target's database (Ticks only). */
  dbCpuMs: number | null;
  dbCpuMsPerMsg: number | null;
  /** Mean requests per database transaction in the windows, by kind (Ticks' group commit), if exposed. */
  meanBatch: Record<string, number> | null;
  /** Mean number of the database's backends in each state during the windows. */
  dbStates: Omit<DbStates, "samples"> | null;
};

type BatchCounts = Map<string, { sum: number; count: number }>;

/** ticks_write_batch_size by its `kind` label (whatever kinds the server has), or null. */
async function batchCounts(url: string): Promise<BatchCounts | null> {
  try {
    const m = await scrapeMetrics(url);
    const out: BatchCounts = new Map();
    for (const [key, value] of m) {
      const match = /^ticks_write_batch_size_(sum|count)\{.*kind="([^"]+)".*\}$/.exec(key);
      if (!match) continue;
      const entry = out.get(match[2]!) ?? { sum: 0, count: 0 };
      entry[match[1] as "sum" | "count"] = value;
      out.set(match[2]!, entry);
    }
    return out;
  } catch {
    return null;
  }
}

/** The PostgreSQL backend processes connected to one database (their CPU is the database's share). */
export class DbProbe {
  private constructor(
    private readonly client: Client,
    private readonly database: string,
  ) {}

  static async open(adminUrl: string, database: string): Promise<DbProbe> {
    const client = new Client({ connectionString: adminUrl });
    await client.connect();
    return new DbProbe(client, database);
  }

  async pids(): Promise<number[]> {
    const { rows } = await this.client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [this.database],
    );
    return rows.map((r) => r.pid);
  }

  /**
   * Samples what the database's backends are doing every `intervalMs` until stopped; the
   * result is the mean number of backends in each state. Shows where a transaction's time
   * goes: on CPU, waiting for a row lock, for WAL/disk, or idle in a transaction while
   * Node prepares its next statement.
   */
  sampleStates(intervalMs = 100): () => Promise<DbStates> {
    const totals: DbStates = { samples: 0, running: 0, lock: 0, walOrIo: 0, otherWait: 0, idleInTransaction: 0, idle: 0 };
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        try {
          const { rows } = await this.client.query<{ state: string | null; wait_event_type: string | null }>(
            `SELECT state, wait_event_type FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
            [this.database],
          );
          totals.samples++;
          for (const r of rows) {
            if (r.state === "idle") totals.idle++;
            else if (r.state?.startsWith("idle in transaction")) totals.idleInTransaction++;
            else if (r.wait_event_type === null) totals.running++;
            else if (r.wait_event_type === "Lock") totals.lock++;
            else if (r.wait_event_type === "IO" || r.wait_event_type === "LWLock") totals.walOrIo++;
            else totals.otherWait++;
          }
        } catch {
          // a failed sample is skipped
        }
        await sleep(intervalMs);
      }
    })();
    return async () => {
      stopped = true;
      await loop;
      return totals;
    };
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

/** Backends in each state, summed over samples (divide by `samples` for the mean). */
export type DbStates = {
  samples: number;
  running: number;
  lock: number;
  /** IO waits and LWLocks: in a write-heavy load, mostly WAL writes and flushes at commit. */
  walOrIo: number;
  otherWait: number;
  /** A transaction is open and the backend waits for the client's next statement. */
  idleInTransaction: number;
  idle: number;
};

export const addStates = (a: DbStates, b: DbStates): DbStates => ({
  samples: a.samples + b.samples,
  running: a.running + b.running,
  lock: a.lock + b.lock,
  walOrIo: a.walOrIo + b.walOrIo,
  otherWait: a.otherWait + b.otherWait,
  idleInTransaction: a.idleInTransaction + b.idleInTransaction,
  idle: a.idle + b.idle,
});

type Side = {
  c: Contender;
  gen: LoadGen;
  windows: Window[];
  serverCpuMs: number;
  dbCpuMs: number;
  batch: BatchCounts | null;
  states: DbStates | null;
};

export async function runInterleaved(
  contenders: Contender[],
  mode: Mode,
  options: PhaseOptions,
  log: (line: string) => void = () => {},
): Promise<PhaseResult[]> {
  const sides: Side[] = [];
  try {
    for (const c of contenders) {
      const gen = await LoadGen.connect({
        url: c.target.url,
        recipientUrl: c.recipientUrl,
        pairs: options.pairs,
        tag: c.tag,
        auth: c.auth,
        contentSize: options.contentSize,
      });
      const batch: BatchCounts | null = c.batchMetrics ? new Map() : null;
      sides.push({ c, gen, windows: [], serverCpuMs: 0, dbCpuMs: 0, batch, states: null });
    }
    const slice = options.durationMs / options.rounds;
    for (let round = 0; round < options.rounds; round++) {
      for (const side of sides) {
        const { gen, c } = side;
        gen.start(mode, options.inFlight);
        await sleep(round === 0 ? options.warmupMs : Math.min(1000, options.warmupMs));
        const dbPids0 = c.probe ? await c.probe.pids() : [];
        const batch0 = side.batch ? await batchCounts(c.target.url) : null;
        const window = gen.window();
        const server0 = cpuSnapshot(c.target.pids);
        const db0 = cpuSnapshot(dbPids0);
        const stopSampling = c.probe?.sampleStates();
        await sleep(slice);
        gen.endWindow(window);
        const server1 = cpuSnapshot(c.target.pids);
        // Backends opened during the window count from zero (they did not exist before it).
        const db1 = c.probe ? cpuSnapshot(await c.probe.pids()) : null;
        if (stopSampling) {
          const states = await stopSampling();
          side.states = side.states ? addStates(side.states, states) : states;
        }
        const batch1 = side.batch ? await batchCounts(c.target.url) : null;
        if (side.batch && batch0 && batch1) {
          for (const [kind, after] of batch1) {
            const before = batch0.get(kind) ?? { sum: 0, count: 0 };
            const total = side.batch.get(kind) ?? { sum: 0, count: 0 };
            side.batch.set(kind, { sum: total.sum + after.sum - before.sum, count: total.count + after.count - before.count });
          }
        } else side.batch = null;
        await gen.stop(options.drainMs, window);
        side.windows.push(window);
        side.serverCpuMs += cpuBetween(server0, server1);
        if (db1) side.dbCpuMs += cpuBetween(db0, db1);
        // Pending receipts and GC of the side just measured settle before the other starts.
        await sleep(300);
      }
    }
  } finally {
    for (const side of sides) side.gen.close();
    // Let the servers finish the disconnects before anything else starts.
    await sleep(500);
  }
  return sides.map((side) => {
    const stats = side.gen.stats(side.windows);
    const acked = stats.ackedPerSec * stats.windowS;
    const result: PhaseResult = {
      target: side.c.target.name,
      rounds: options.rounds,
      ...stats,
      serverCpuMs: side.serverCpuMs,
      serverCpuPct: (side.serverCpuMs / (stats.windowS * 1000)) * 100,
      serverCpuMsPerMsg: acked > 0 ? side.serverCpuMs / acked : null,
      dbCpuMs: side.c.probe ? side.dbCpuMs : null,
      dbCpuMsPerMsg: side.c.probe && acked > 0 ? side.dbCpuMs / acked : null,
      dbStates:
        side.states && side.states.samples > 0
          ? (Object.fromEntries(
              Object.entries(side.states)
                .filter(([k]) => k !== "samples")
                .map(([k, v]) => [k, v / side.states!.samples]),
            ) as Omit<DbStates, "samples">)
          : null,
      meanBatch: side.batch
        ? Object.fromEntries([...side.batch].filter(([, b]) => b.count > 0).map(([kind, b]) => [kind, b.sum / b.count]))
        : null,
    };
    log(
      `${result.target} ${stats.mode}: ${Math.round(stats.ackedPerSec)} acked/s, ${Math.round(stats.lifecyclesPerSec)} lifecycles/s, ` +
        `ack p99 ${stats.ackMs.p99?.toFixed(1)} ms, incomplete ${stats.incomplete.status}/${stats.sends}, errors ${stats.errors}`,
    );
    return result;
  });
}
