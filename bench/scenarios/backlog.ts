/**
 * Backlog drain: N undelivered messages for one recipient, written straight into the
 * database, then the recipient connects and acknowledges every `message:backlog` page
 * until `sync:complete`. Meanwhile a second pair keeps exchanging messages at a steady
 * rate: their acknowledgement latency and the server's event-loop lag, before and during
 * the drain, show whether one big drain hurts everyone else on the node.
 */
import { Client } from "pg";
import type { BacklogPage } from "../../src/protocol/events";
import { devAuth, LoadGen, openSocket } from "../lib/load";
import { runInterleaved } from "../lib/phase";
import { cpuBetween, cpuSnapshot, scrapeMetrics, startRelayProcess, type Target } from "../lib/procs";
import { ratio, sleep } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { Context, ScenarioResult } from "./context";

const SENDER = "bl-sender";
const DRAINER = "bl-drainer";

/** One direct conversation holding `n` messages from SENDER, none delivered to DRAINER. */
async function seedBacklog(url: string, n: number, contentSize: number): Promise<number> {
  const client = new Client({ connectionString: url });
  await client.connect();
  const t0 = performance.now();
  try {
    await client.query("BEGIN");
    await client.query(`INSERT INTO users (user_id) VALUES ($1), ($2) ON CONFLICT (user_id) DO NOTHING`, [SENDER, DRAINER]);
    const { rows } = await client.query<{ conversation_id: string }>(
      `INSERT INTO conversations (conversation_id, kind, direct_key, last_seq, created_at, last_message_at, created_by)
       VALUES (gen_random_uuid(), 'direct', $1, $2, now() - interval '1 hour', now(), $3)
       RETURNING conversation_id`,
      [DRAINER < SENDER ? `${DRAINER} ${SENDER}` : `${SENDER} ${DRAINER}`, n, SENDER],
    );
    const conversationId = rows[0]!.conversation_id;
    await client.query(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       VALUES ($1, $2, now() - interval '1 hour'), ($1, $3, now() - interval '1 hour')`,
      [conversationId, SENDER, DRAINER],
    );
    await client.query(
      `INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
         created_at, expires_at)
       SELECT gen_random_uuid(), $1, g, $2, $3, 'backlog:' || g, repeat('x', $4),
         now() - interval '1 hour' + g * interval '1 millisecond', now() + interval '30 days'
       FROM generate_series(1, $5::int) AS g`,
      [conversationId, SENDER, DRAINER, contentSize, n],
    );
    // delivery_id (identity) follows seq: the backlog order.
    await client.query(
      `INSERT INTO message_delivery (message_id, recipient_id, status)
       SELECT message_id, $2, 'sent' FROM messages WHERE conversation_id = $1 ORDER BY seq`,
      [conversationId, DRAINER],
    );
    await client.query("COMMIT");
    await client.query("ANALYZE messages; ANALYZE message_delivery");
    return (performance.now() - t0) / 1000;
  } finally {
    await client.end();
  }
}

type LagSample = { p99: number; max: number };

/** Scrapes the event-loop lag every second (each scrape resets prom-client's histogram). */
function lagSampler(url: string) {
  const samples: LagSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(1000);
      try {
        const m = await scrapeMetrics(url);
        samples.push({ p99: (m.get("nodejs_eventloop_lag_p99_seconds") ?? NaN) * 1000, max: (m.get("nodejs_eventloop_lag_max_seconds") ?? NaN) * 1000 });
      } catch {
        // a scrape that times out under load is itself a data point, but not a number
      }
    }
  })();
  return {
    /** Discards what was measured so far (and resets the server's histogram). */
    reset: async () => {
      samples.length = 0;
      await scrapeMetrics(url).catch(() => {});
    },
    take: (): { p99Max: number | null; p99Median: number | null; max: number | null; samples: number } => {
      const p99s = samples.map((s) => s.p99).filter(Number.isFinite).sort((a, b) => a - b);
      const maxes = samples.map((s) => s.max).filter(Number.isFinite);
      const out = {
        p99Max: p99s.length ? p99s[p99s.length - 1]! : null,
        p99Median: p99s.length ? p99s[Math.floor(p99s.length / 2)]! : null,
        max: maxes.length ? Math.max(...maxes) : null,
        samples: samples.length,
      };
      samples.length = 0;
      return out;
    },
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

type Drain = { seconds: number; messages: number; pages: number; firstPageMs: number; delivered: number; outOfOrder: number };

async function drainBacklog(url: string, timeoutMs: number): Promise<Drain> {
  let messages = 0;
  let pages = 0;
  let firstPageMs = 0;
  let outOfOrder = 0;
  let lastSeq = 0;
  let delivered = -1;
  const t0 = performance.now();
  const socket = await openSocket(url, { userId: DRAINER, deviceId: "bench" }, timeoutMs, (s) => {
    s.off("message:backlog");
    s.on("message:backlog", (page: BacklogPage, ack) => {
      if (pages === 0) firstPageMs = performance.now() - t0;
      pages++;
      for (const m of page.messages) {
        if (m.seq <= lastSeq) outOfOrder++;
        lastSeq = m.seq;
      }
      messages += page.messages.length;
      ack();
    });
    s.once("sync:complete", (info) => {
      delivered = info.delivered;
    });
  });
  // openSocket resolves at sync:complete.
  const seconds = (performance.now() - t0) / 1000;
  socket.disconnect();
  return { seconds, messages, pages, firstPageMs, delivered, outOfOrder };
}

export async function runBacklog(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  let relayMsgPerSec = ctx.shared.relayMaxMsgPerSec ?? null;
  let relayNote = "relay msg/s from the main scenario of this run";
  if (relayMsgPerSec === null) {
    // Run on its own: measure the relay's maximum briefly so the ratio still has a base.
    let relay: Target | null = null;
    try {
      relay = await startRelayProcess();
      const [r] = await runInterleaved(
        [{ target: relay, auth: devAuth, tag: `${ctx.runId}-brm` }],
        { kind: "max" },
        {
          pairs: o.pairs,
          inFlight: o.inFlight,
          warmupMs: o.warmupS * 1000,
          durationMs: Math.max(3, o.durationS / 3) * 1000,
          rounds: 1,
          drainMs: o.drainS * 1000,
          contentSize: o.contentSize,
        },
        ctx.log,
      );
      relayMsgPerSec = r!.ackedPerSec;
      relayNote = "relay msg/s measured briefly for this scenario (main was not run)";
    } finally {
      await relay?.stop();
    }
  }

  let ticks: TicksUnderTest | null = null;
  let live: LoadGen | null = null;
  let lag: ReturnType<typeof lagSampler> | null = null;
  try {
    ticks = await startTicksOnFreshDb();
    ctx.log(`backlog: seeding ${o.backlog} undelivered messages into ${ticks.db.name}`);
    const seedSeconds = await seedBacklog(ticks.db.url, o.backlog, o.contentSize);
    ctx.log(`backlog: seeded in ${seedSeconds.toFixed(1)} s`);

    live = await LoadGen.connect({ url: ticks.target.url, pairs: 1, tag: `${ctx.runId}-bl`, auth: devAuth, contentSize: o.contentSize });
    live.start({ kind: "paced", rate: o.backlogLiveRate }, o.inFlight);
    lag = lagSampler(ticks.target.url);
    await sleep(o.warmupS * 1000);

    // Before: the live pair alone.
    await lag.reset();
    const before = live.window();
    const stopBefore = ticks.probe.sampleStates();
    await sleep(Math.max(5, o.durationS / 3) * 1000);
    live.endWindow(before);
    const statesBefore = await stopBefore();
    const lagBefore = lag.take();

    // During: the drain.
    await lag.reset();
    const during = live.window();
    const cpu0 = cpuSnapshot(ticks.target.pids);
    const db0 = cpuSnapshot(await ticks.probe.pids());
    const stopDuring = ticks.probe.sampleStates();
    const drain = await drainBacklog(ticks.target.url, 600_000);
    live.endWindow(during);
    const statesDuring = await stopDuring();
    const cpu1 = cpuSnapshot(ticks.target.pids);
    const db1 = cpuSnapshot(await ticks.probe.pids());
    const lagDuring = lag.take();
    await live.stop(o.drainS * 1000, during);
    const liveBefore = live.stats([before]);
    const liveDuring = live.stats([during]);
    ctx.log(`backlog: drained ${drain.messages} in ${drain.seconds.toFixed(1)} s; live ack p99 ${liveDuring.ackMs.p99?.toFixed(1)} ms`);

    const drainRate = drain.messages / drain.seconds;
    const serverCpuMs = cpuBetween(cpu0, cpu1);
    const dbCpuMs = cpuBetween(db0, db1);
    const section: Section = {
      title: `backlog drain: ${o.backlog} undelivered messages to one device, pages acknowledged one by one`,
      columns: ["before drain", "during drain", "during/before"],
      rows: [
        { label: "drain msg/s (connect → sync:complete)", cells: ["", drainRate, null] },
        { label: "drain msg/s / relay msg/s", cells: ["", ratio(drainRate, relayMsgPerSec), null], ratio: true },
        { label: "drain seconds", cells: ["", drain.seconds, null] },
        { label: "first page after connect, ms", cells: ["", drain.firstPageMs, null] },
        { label: "pages", cells: ["", drain.pages, null] },
        { label: "server CPU ms per drained message", cells: ["", serverCpuMs / drain.messages, null] },
        { label: "db backends CPU ms per drained message", cells: ["", dbCpuMs / drain.messages, null] },
        { heading: `second pair, paced at ${o.backlogLiveRate} msg/s (latency from scheduled send time)` },
        { label: "ack p50 ms", cells: [liveBefore.ackMs.p50, liveDuring.ackMs.p50, ratio(liveDuring.ackMs.p50, liveBefore.ackMs.p50)] },
        { label: "ack p99 ms", cells: [liveBefore.ackMs.p99, liveDuring.ackMs.p99, ratio(liveDuring.ackMs.p99, liveBefore.ackMs.p99)] },
        { label: "ack max ms", cells: [liveBefore.ackMs.max, liveDuring.ackMs.max, ratio(liveDuring.ackMs.max, liveBefore.ackMs.max)] },
        { label: "status p99 ms (whole lifecycle)", cells: [liveBefore.statusMs.p99, liveDuring.statusMs.p99, ratio(liveDuring.statusMs.p99, liveBefore.statusMs.p99)] },
        { label: "sends measured", cells: [liveBefore.sends, liveDuring.sends, null] },
        { heading: "server event loop (GET /metrics, prom-client, scraped every second)" },
        { label: "lag p99 ms, worst second", cells: [lagBefore.p99Max, lagDuring.p99Max, ratio(lagDuring.p99Max, lagBefore.p99Max)] },
        { label: "lag p99 ms, median second", cells: [lagBefore.p99Median, lagDuring.p99Median, ratio(lagDuring.p99Median, lagBefore.p99Median)] },
        { label: "lag max ms", cells: [lagBefore.max, lagDuring.max, ratio(lagDuring.max, lagBefore.max)] },
        { heading: "database backends (pg_stat_activity every 100 ms, mean count)" },
        ...(
          [
            ["on CPU", "running"],
            ["waiting for a lock", "lock"],
            ["waiting on WAL/IO (incl. LWLock)", "walOrIo"],
            ["idle in transaction (waiting for Node)", "idleInTransaction"],
          ] as const
        ).map(([label, key]) => {
          const b = statesBefore.samples ? statesBefore[key] / statesBefore.samples : null;
          const d = statesDuring.samples ? statesDuring[key] / statesDuring.samples : null;
          return { label, cells: [b, d, null] };
        }),
      ],
      notes: [
        `seeded with INSERT … SELECT generate_series in ${seedSeconds.toFixed(1)} s; ${relayNote} (${Math.round(relayMsgPerSec ?? 0)} msg/s)`,
        "prom-client samples the loop every 10 ms, so an idle loop already reads about 10 ms",
        ...(drain.messages !== o.backlog || drain.delivered !== o.backlog
          ? [`MISMATCH: received ${drain.messages}, sync:complete said ${drain.delivered}, seeded ${o.backlog}`]
          : []),
        ...(drain.outOfOrder ? [`${drain.outOfOrder} messages arrived out of seq order`] : []),
        ...(liveDuring.errors ? [`live pair: ${liveDuring.errors} error replies ${JSON.stringify(liveDuring.errorCodes)}`] : []),
      ],
    };
    return {
      sections: [section],
      data: {
        seedSeconds,
        drain,
        drainMsgPerSec: drainRate,
        relayMsgPerSec,
        serverCpuMs,
        dbCpuMs,
        liveBefore,
        liveDuring,
        lagBefore,
        lagDuring,
        statesBefore,
        statesDuring,
      },
    };
  } finally {
    await lag?.stop();
    live?.close();
    await ticks?.stop();
  }
}
