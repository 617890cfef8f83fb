import type { Message } from "../protocol";

/** Called once for each offered message: null when the device acknowledged it, an error otherwise. */
export type EmitAck = (err: Error | null) => void;

export type OrderOptions = {
  /**
   * How long a message waits for the lower seqs missing before it, on one socket. Missed
   * seqs come back only by redelivery, seconds later: past this, what waits goes out.
   * @default 1000 (far under DELIVERY_ACK_TIMEOUT_MS, which counts from the emit)
   */
  holdMs: number;
  /**
   * A conversation this socket has no position in yet (its first live message since it
   * connected, or since the conversation was idle): what arrives within this window is put
   * in seq order before the first goes out.
   * @default 40
   */
  firstWindowMs: number;
  /**
   * A conversation with no traffic on this socket for this long is forgotten (its next
   * message opens a first window again).
   * @default 60000
   */
  idleMs: number;
  /**
   * The most messages held in one conversation of one socket: past it, the gap is given up
   * at once rather than memory grown.
   * @default 1000
   */
  maxHeld: number;
};

export const ORDER_DEFAULTS: OrderOptions = { holdMs: 1000, firstWindowMs: 40, idleMs: 60_000, maxHeld: 1000 };

/** Why a gap was given up: the hold ended, or too many messages waited behind it. */
export type GiveUpReason = "hold" | "max_held";

export type OrderHooks = {
  /** The clock idle conversations are measured by. @default Date.now */
  now?: () => number;
  /** A gap given up (a metric: with every node and Redis up, expected never). */
  gaveUp?: (reason: GiveUpReason) => void;
};

/** A seq this socket has: a message to emit, or (no message) one it learned another way. */
type Held = { message?: Message; ack?: EmitAck };

type Position = {
  /** The highest seq this socket has with every lower one (of its range); undefined: not known yet. */
  last: number | undefined;
  held: Map<number, Held>;
  timer: ReturnType<typeof setTimeout> | undefined;
  touched: number;
};

/**
 * One socket's live `message:new`, emitted in `seq` order per conversation.
 *
 * Every member of a conversation gets a contiguous range of its seqs (a group member from
 * the entry that added them to the one that removed them): each as a live message, or, for
 * what the device sent itself, as the acknowledgement (`acknowledged`). So a seq above the
 * last one emitted + 1 means one is missing, usually still on its way from another node:
 * it waits (`holdMs`) for the missing ones, then goes out in order. A lower seq (a
 * redelivery, a duplicate) goes out at once. Per socket, only conversations with recent
 * traffic are kept; `close` fails what is held and clears the timers.
 */
export class OrderedEmit {
  private readonly positions = new Map<string, Position>();

  constructor(
    private readonly userId: string,
    private readonly emitNow: (message: Message, ack: EmitAck) => void,
    private readonly options: OrderOptions = ORDER_DEFAULTS,
    private readonly hooks: OrderHooks = {},
  ) {}

  offer(message: Message, ack: EmitAck): void {
    this.accept(message.conversationId, message.seq, { message, ack }, message);
  }

  /** This socket's own send (or change) was acknowledged with this seq: nothing waits for it. */
  acknowledged(message: Message): void {
    this.accept(message.conversationId, message.seq, {}, message);
  }

  /** Conversations with a position kept (for tests and memory checks). */
  get size(): number {
    return this.positions.size;
  }

  /** The socket is gone: what is held is failed (its receipt never comes), timers cleared. */
  close(): void {
    for (const p of this.positions.values()) {
      if (p.timer) clearTimeout(p.timer);
      for (const h of p.held.values()) h.ack?.(new Error("socket disconnected"));
    }
    this.positions.clear();
  }

  private accept(conversationId: string, seq: number, item: Held, message: Message): void {
    const p = this.position(conversationId);
    if (p.last !== undefined && addsUser(message, this.userId) && seq > p.last + 1) {
      // The entry that (re-)adds this user starts a new range: nothing before it is theirs.
      this.releaseAll(p);
      p.last = seq - 1;
    }
    if (p.last === undefined) {
      p.held.set(seq, item);
      p.timer ??= setTimeout(() => this.firstWindowOver(conversationId, p), this.options.firstWindowMs);
    } else if (seq <= p.last + 1) {
      this.emit(item);
      if (seq === p.last + 1) {
        p.last = seq;
        this.releaseContiguous(p);
      }
    } else {
      p.held.set(seq, item);
      if (p.held.size > this.options.maxHeld) this.giveUpGap(conversationId, p, "max_held");
      else p.timer ??= setTimeout(() => this.giveUpGap(conversationId, p, "hold"), this.options.holdMs);
    }
    if (endsMembership(message, this.userId) && p.held.size === 0) this.forget(conversationId, p);
  }

  /** The first window closed: the lowest seq that came starts this socket's position. */
  private firstWindowOver(conversationId: string, p: Position): void {
    p.timer = undefined;
    if (p.held.size === 0) return;
    p.last = Math.min(...p.held.keys()) - 1;
    this.releaseContiguous(p);
    this.afterRelease(conversationId, p);
  }

  /** The missing seq did not come in time (or too much waits): skip to the lowest held. */
  private giveUpGap(conversationId: string, p: Position, reason: GiveUpReason): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = undefined;
    if (p.held.size === 0) return;
    this.hooks.gaveUp?.(reason);
    p.last = Math.min(...p.held.keys()) - 1;
    this.releaseContiguous(p);
    this.afterRelease(conversationId, p);
  }

  private afterRelease(conversationId: string, p: Position): void {
    if (p.held.size > 0) p.timer = setTimeout(() => this.giveUpGap(conversationId, p, "hold"), this.options.holdMs);
  }

  private releaseContiguous(p: Position): void {
    for (let next = p.held.get(p.last! + 1); next; next = p.held.get(p.last! + 1)) {
      p.held.delete(++p.last!);
      this.emit(next);
    }
    if (p.held.size === 0 && p.timer) {
      clearTimeout(p.timer);
      p.timer = undefined;
    }
  }

  private releaseAll(p: Position): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = undefined;
    for (const seq of [...p.held.keys()].sort((a, b) => a - b)) this.emit(p.held.get(seq)!);
    p.held.clear();
  }

  private emit(item: Held): void {
    if (item.message) this.emitNow(item.message, item.ack ?? (() => {}));
  }

  /** Gets (and marks recent) a conversation's position; forgets idle ones on the way. */
  private position(conversationId: string): Position {
    const now = (this.hooks.now ?? Date.now)();
    let p = this.positions.get(conversationId);
    if (p) this.positions.delete(conversationId); // re-inserted last: the map runs oldest first
    else p = { last: undefined, held: new Map(), timer: undefined, touched: now };
    p.touched = now;
    this.positions.set(conversationId, p);
    for (const [id, old] of this.positions) {
      if (now - old.touched < this.options.idleMs) break;
      if (old.held.size === 0 && !old.timer) this.positions.delete(id);
    }
    return p;
  }

  private forget(conversationId: string, p: Position): void {
    if (p.timer) clearTimeout(p.timer);
    this.positions.delete(conversationId);
  }
}

/** A group entry that removes this user (removed, or left): the end of their range. */
function endsMembership(m: Message, userId: string): boolean {
  const g = m.kind === "group" ? m.group : null;
  return !!g && ((g.action === "remove" && g.userIds.includes(userId)) || (g.action === "leave" && g.userIds[0] === userId));
}

/** A group entry that adds this user: the start of a (new) range. */
function addsUser(m: Message, userId: string): boolean {
  return m.kind === "group" && m.group?.action === "add" && m.group.userIds.includes(userId);
}
