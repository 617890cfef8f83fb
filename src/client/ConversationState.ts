/**
 * One conversation's position in its log, as this device has it: `high`, the highest seq
 * up to which every message was handed to the app (none missing), and `low`, the oldest seq
 * loaded (older ones come from scrolling back). A message at or below `high` is a duplicate:
 * de-duplication by seq needs no memory per message. A message beyond high+1 waits in a
 * bounded `ahead` buffer until the gap before it is filled from history.
 */
import type { ChatMessage } from "./entries";

export type Accepted =
  | { kind: "released"; messages: ChatMessage[] }
  | { kind: "duplicate" }
  | { kind: "gap" }
  | { kind: "older"; message: ChatMessage };

export class ConversationState {
  /** Every seq up to here was handed to the app. */
  high = 0;
  /** The oldest seq handed to the app; null until something was. */
  low: number | null = null;
  /** Whether the window was set up (from the newest page of history or a first message). */
  known = false;
  private readonly ahead = new Map<number, ChatMessage>();

  constructor(
    readonly id: string,
    private readonly maxAhead: number,
  ) {}

  accept(message: ChatMessage): Accepted {
    const { seq } = message;
    if (this.low !== null && seq < this.low) return { kind: "older", message };
    if (seq <= this.high) return { kind: "duplicate" };
    if (seq > this.high + 1) {
      if (this.ahead.has(seq)) return { kind: "duplicate" };
      this.ahead.set(seq, message);
      // Bounded: forget the newest beyond the limit; the gap-fill fetches them again.
      if (this.ahead.size > this.maxAhead) this.ahead.delete(Math.max(...this.ahead.keys()));
      return { kind: "gap" };
    }
    return { kind: "released", messages: [this.take(message), ...this.drain()] };
  }

  /** Messages up to `seq` will never come (expired, or fetched history skipped them). */
  skipTo(seq: number): ChatMessage[] {
    if (seq > this.high) this.high = seq;
    for (const s of this.ahead.keys()) if (s <= this.high) this.ahead.delete(s);
    return this.drain();
  }

  /** Scrolling back brought messages down to `seq`. */
  loadedDownTo(seq: number): void {
    if (this.low === null || seq < this.low) this.low = seq;
  }

  get waiting(): number {
    return this.ahead.size;
  }

  /** The lowest seq waiting behind a gap, if any. */
  get nextWaiting(): number | null {
    return this.ahead.size === 0 ? null : Math.min(...this.ahead.keys());
  }

  private take(message: ChatMessage): ChatMessage {
    this.high = message.seq;
    if (this.low === null) this.low = message.seq;
    return message;
  }

  private drain(): ChatMessage[] {
    const out: ChatMessage[] = [];
    for (let next = this.ahead.get(this.high + 1); next; next = this.ahead.get(this.high + 1)) {
      this.ahead.delete(next.seq);
      out.push(this.take(next));
    }
    return out;
  }
}
