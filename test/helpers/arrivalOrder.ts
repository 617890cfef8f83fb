/**
 * The order in which one device received messages, measured against what docs/protocol.md
 * ("Ordering and gaps") promises:
 * - the backlog pages of one sync are in seq order within each conversation;
 * - live `message:new` arrive in seq order per conversation, whichever processes stored
 *   them, while every process and Redis are up; across a failure (Redis down, a process
 *   died) a message the device missed when it was first offered comes later, by redelivery,
 *   and may follow higher seqs;
 * - so a client that orders by seq, as the SDK does (its ConversationState), ends with every
 *   conversation complete and in order.
 */
import { ConversationState } from "../../src/client/ConversationState";
import type { Message } from "../../src/protocol";

/** The SDK's default for messages held beyond a gap (SyncOptions.maxAhead). */
const MAX_AHEAD = 1000;

export class ArrivalOrder {
  /** Per conversation: first arrivals with a lower seq than one already received. */
  readonly inversions = new Map<string, number>();
  /**
   * Live first arrivals with a lower seq than an earlier live first arrival of the same
   * conversation: the late messages, with when the server stored them (createdAt, epoch ms).
   */
  readonly liveInversions: { conversationId: string; seq: number; createdAt: number }[] = [];
  private readonly maxLiveSeq = new Map<string, number>();
  /** Backlog messages with a lower seq than one earlier in the same sync's pages. */
  backlogInversions = 0;
  /** Who wrote in each conversation (to tell one process's stream from another's). */
  readonly senders = new Map<string, Set<string>>();
  private readonly seen = new Set<string>();
  private readonly maxSeq = new Map<string, number>();
  private syncMax = new Map<string, number>();
  private syncSeen = new Set<string>();
  /** What a client ordering by seq hands to its app, per conversation. */
  private readonly ordered = new Map<string, { state: ConversationState; handed: number[] }>();

  /** A new socket starts its sync: its backlog pages are compared among themselves. */
  newSync(): void {
    this.syncMax = new Map();
    this.syncSeen = new Set();
  }

  backlog(page: Message[]): void {
    for (const m of page) {
      // A page sent again (no acknowledgement in time) repeats its messages: not out of order.
      if (!this.syncSeen.has(m.id)) {
        this.syncSeen.add(m.id);
        if (m.seq < (this.syncMax.get(m.conversationId) ?? 0)) this.backlogInversions++;
        else this.syncMax.set(m.conversationId, m.seq);
      }
      this.arrived(m);
    }
  }

  live(m: Message): void {
    if (!this.seen.has(m.id)) {
      const max = this.maxLiveSeq.get(m.conversationId) ?? 0;
      if (m.seq < max) this.liveInversions.push({ conversationId: m.conversationId, seq: m.seq, createdAt: Date.parse(m.createdAt) });
      else this.maxLiveSeq.set(m.conversationId, m.seq);
    }
    this.arrived(m);
  }

  get totalInversions(): number {
    let n = 0;
    for (const k of this.inversions.values()) n += k;
    return n;
  }

  /**
   * Conversations that a client ordering by seq would not hold as 1..n in order, given how
   * many messages each has (`counts`): a hole, a message waiting behind one, or a wrong order.
   */
  orderedIncomplete(counts: Map<string, number>): string[] {
    const bad: string[] = [];
    for (const [conversationId, n] of counts) {
      const o = this.ordered.get(conversationId);
      const handed = o?.handed ?? [];
      const complete = handed.length === n && handed.every((seq, i) => seq === i + 1) && (o?.state.waiting ?? 0) === 0;
      if (!complete) bad.push(conversationId);
    }
    return bad;
  }

  private arrived(m: Message): void {
    const senders = this.senders.get(m.conversationId) ?? new Set<string>();
    senders.add(m.from);
    this.senders.set(m.conversationId, senders);
    if (!this.seen.has(m.id)) {
      this.seen.add(m.id);
      const max = this.maxSeq.get(m.conversationId) ?? 0;
      if (m.seq < max) this.inversions.set(m.conversationId, (this.inversions.get(m.conversationId) ?? 0) + 1);
      else this.maxSeq.set(m.conversationId, m.seq);
    }
    let o = this.ordered.get(m.conversationId);
    if (!o) this.ordered.set(m.conversationId, (o = { state: new ConversationState(m.conversationId, MAX_AHEAD), handed: [] }));
    const accepted = o.state.accept(m);
    if (accepted.kind === "released") o.handed.push(...accepted.messages.map((x) => x.seq));
  }
}

/** A device of the fault suite: where it connected, and what it received. */
type Device = { userId: string; urlsUsed: readonly string[] };

/**
 * Conversations that one server process served from end to end (every writer and the
 * recipient stayed connected to that one process, so each message was stored there and
 * offered to a socket there, Redis or no Redis), and the out-of-seq first arrivals in them:
 * the docs promise none.
 */
export function withinOneProcess(
  recipients: (Device & { order: ArrivalOrder })[],
  senders: Device[],
): { conversations: number; inversions: number } {
  const onlyUrl = (d: Device | undefined) => (d && d.urlsUsed.length === 1 ? d.urlsUsed[0] : undefined);
  const senderById = new Map(senders.map((s) => [s.userId, s]));
  let conversations = 0;
  let inversions = 0;
  for (const r of recipients) {
    const url = onlyUrl(r);
    if (!url) continue;
    for (const [conversationId, writers] of r.order.senders) {
      if (![...writers].every((w) => onlyUrl(senderById.get(w)) === url)) continue;
      conversations++;
      inversions += r.order.inversions.get(conversationId) ?? 0;
    }
  }
  return { conversations, inversions };
}

/**
 * Live inversions (late messages arriving after a higher seq of their conversation, by
 * live `message:new`), split by when the late message was stored: inside a fault window
 * (from a little before Redis went away or a node died to when the cluster was whole again),
 * where the docs allow them, or outside, where they promise none, whichever processes the
 * writers and the device were on. No window: every one counts as outside.
 */
export function liveInversions(
  orders: ArrivalOrder[],
  fault?: { from: number; to: number },
): { outside: number; inside: number } {
  let outside = 0;
  let inside = 0;
  for (const o of orders) {
    for (const { createdAt } of o.liveInversions) {
      if (fault && createdAt >= fault.from && createdAt <= fault.to) inside++;
      else outside++;
    }
  }
  return { outside, inside };
}
