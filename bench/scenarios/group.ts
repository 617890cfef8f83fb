/**
 * A 1,024-member group with every member connected: messages per second that are stored,
 * delivered to all 1,023 other members, acknowledged by each of them, and whose 1,023
 * "delivered" statuses reached the sender. Ticks (one node, PostgreSQL) against the relay
 * doing the same fan-out with nothing stored, measured in alternating rounds in one run.
 *
 * Closed loop: `--group-in-flight` messages outstanding from one sender; a message counts
 * when its last status arrives. All sockets live in this harness process, which shares the
 * machine's two cores with the server: the ratio is the figure to read, not the absolute.
 */
import { devAuth, openSocket } from "../lib/load";
import { startRelayProcess, type Target } from "../lib/procs";
import { round, sleep, summarize, ratio } from "../lib/stats";
import type { Section } from "../lib/table";
import { startTicksOnFreshDb, type TicksUnderTest } from "../lib/ticks";
import type { ClientSocket } from "../../test/helpers/socket";
import type { Context, ScenarioResult } from "./context";

type Pending = { clientMsgId: string; sentAt: number; received: number; statuses: number; acked: boolean; done: () => void };

/** One target's group: its members' sockets and what arrived for each message. */
export class GroupLoad {
  private readonly byClientId = new Map<string, Pending>();
  private readonly byId = new Map<string, Pending>();
  private conversationId = "";
  private counter = 0;
  latencies: number[] = [];
  completed = 0;

  private constructor(
    readonly name: string,
    private readonly sockets: ClientSocket[],
    private readonly tag: string,
  ) {}

  static async open(name: string, url: string, size: number, tag: string): Promise<GroupLoad> {
    const load = new GroupLoad(name, [], tag);
    const userIds = Array.from({ length: size }, (_, i) => `${tag}-${i}`);
    // A few at a time: a thousand handshakes at once would time out on this machine.
    for (let i = 0; i < size; i += 64) {
      const batch = await Promise.all(
        userIds.slice(i, i + 64).map((userId, k) =>
          openSocket(url, devAuth(userId) as Record<string, unknown>, 60_000, (socket) => {
            if (i + k === 0) socket.on("message:status", (s) => load.onStatus(s.messageIds));
            else socket.on("message:new", (m, ack) => (ack(), load.onMessage(m.id, m.clientMsgId)));
          }),
        ),
      );
      load.sockets.push(...batch);
    }
    const created = await load.sockets[0]!.timeout(60_000).emitWithAck("group:create", { title: tag, members: userIds.slice(1) });
    if (!created.ok) throw new Error(`${name}: group:create failed: ${created.error.code} ${created.error.message}`);
    load.conversationId = created.conversationId;
    return load;
  }

  private onMessage(id: string, clientMsgId: string): void {
    const p = this.byClientId.get(clientMsgId);
    if (!p) return;
    if (!this.byId.has(id)) this.byId.set(id, p);
    p.received++;
    this.check(p, id);
  }

  private onStatus(ids: string[]): void {
    for (const id of ids) {
      const p = this.byId.get(id);
      if (!p) continue;
      p.statuses++;
      this.check(p, id);
    }
  }

  private check(p: Pending, id: string): void {
    const others = this.sockets.length - 1;
    if (!p.acked || p.received < others || p.statuses < others) return;
    this.byClientId.delete(p.clientMsgId);
    this.byId.delete(id);
    p.done();
  }

  /** One message through its whole fan-out; resolves when its last status arrived. */
  private one(timeoutMs: number): Promise<number> {
    const clientMsgId = `${this.tag}-m${++this.counter}`;
    const sentAt = performance.now();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: ${clientMsgId} not through in ${timeoutMs} ms`)), timeoutMs);
      const p: Pending = {
        clientMsgId,
        sentAt,
        received: 0,
        statuses: 0,
        acked: false,
        done: () => {
          clearTimeout(timer);
          resolve(performance.now() - sentAt);
        },
      };
      this.byClientId.set(clientMsgId, p);
      this.sockets[0]!.emit("message:send", { clientMsgId, conversationId: this.conversationId, content: "x".repeat(100) }, (reply) => {
        if (!reply.ok) return reject(new Error(`${this.name}: send refused: ${reply.error.code}`));
        this.byId.set(reply.message.id, p);
        p.acked = true;
        this.check(p, reply.message.id);
      });
    });
  }

  /** Closed loop for `seconds`: `inFlight` messages outstanding; counts those completed in the window. */
  async window(seconds: number, inFlight: number, measured: boolean): Promise<void> {
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < end) {
          const ms = await this.one(60_000);
          if (measured && performance.now() <= end) {
            this.completed++;
            this.latencies.push(ms);
          }
        }
      }),
    );
  }

  close(): void {
    for (const s of this.sockets) s.disconnect();
  }
}

export async function runGroup(ctx: Context): Promise<ScenarioResult> {
  const o = ctx.options;
  const size = o.groupSize;
  const nofile = size * 2 + 1024;
  let relay: Target | undefined;
  let ticks: TicksUnderTest | undefined;
  const loads: GroupLoad[] = [];
  try {
    relay = await startRelayProcess(nofile);
    ticks = await startTicksOnFreshDb({}, nofile);
    ctx.log(`group: opening ${size} sockets on each target`);
    loads.push(await GroupLoad.open("relay", relay.url, size, `gr-${ctx.runId}`));
    loads.push(await GroupLoad.open("ticks", ticks.target.url, size, `gt-${ctx.runId}`));
    for (const load of loads) await load.window(o.warmupS, o.groupInFlight, false);
    const perRound = o.durationS / o.rounds;
    for (let r = 0; r < o.rounds; r++) {
      for (const load of loads) {
        ctx.log(`group: round ${r + 1}/${o.rounds}, ${load.name}`);
        await load.window(perRound, o.groupInFlight, true);
        await sleep(200);
      }
    }
    const [relayLoad, ticksLoad] = loads as [GroupLoad, GroupLoad];
    const rate = (l: GroupLoad) => round(l.completed / o.durationS)!;
    const relayLat = summarize(relayLoad.latencies);
    const ticksLat = summarize(ticksLoad.latencies);
    const section: Section = {
      title:
        `group: one sender into a ${size}-member group, every member connected and acknowledging, ` +
        `${o.groupInFlight} messages in flight, ${o.durationS} s measured per target in ${o.rounds} alternating rounds`,
      columns: ["relay", "ticks", "ticks/relay"],
      rows: [
        { label: "messages/s through the whole fan-out", cells: [rate(relayLoad), rate(ticksLoad), round(ratio(rate(ticksLoad), rate(relayLoad)))] },
        { label: "deliveries/s (messages/s x recipients)", cells: [rate(relayLoad) * (size - 1), rate(ticksLoad) * (size - 1), null] },
        { label: "ms send → last status, p50", cells: [round(relayLat.p50), round(ticksLat.p50), round(ratio(ticksLat.p50, relayLat.p50))] },
        { label: "ms send → last status, p99", cells: [round(relayLat.p99), round(ticksLat.p99), round(ratio(ticksLat.p99, relayLat.p99))] },
      ],
      notes: [
        "a message counts once its send is acknowledged, every other member got it and acknowledged it, and the sender got every member's delivered status",
        "ticks stores the message, one delivery row per member, and every receipt; the relay stores nothing",
        "all sockets live in the harness process, on the same two cores as the server",
      ],
    };
    return {
      sections: [section],
      data: { size, relay: { msgPerSec: rate(relayLoad), latency: relayLat }, ticks: { msgPerSec: rate(ticksLoad), latency: ticksLat } },
    };
  } finally {
    for (const l of loads) l.close();
    await relay?.stop().catch((err) => ctx.log(`group: relay stop failed: ${err}`));
    await ticks?.stop().catch((err) => ctx.log(`group: ticks stop failed: ${err}`));
  }
}
