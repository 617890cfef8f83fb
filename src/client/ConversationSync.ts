/**
 * Keeps every conversation gap-free on this device. Messages arrive live, from the backlog,
 * from this device's own sends and from history; each goes through its conversation's
 * ConversationState and reaches the app once, in seq order. A gap (or a `conversation:list`
 * `lastSeq` beyond what the device holds) is filled from `message:history` `afterSeq`, so a
 * device that was offline while another device of the user took the messages still ends
 * with every message. Work on one conversation runs one step at a time.
 */
import type { HistoryRequest, HistoryResult } from "../protocol/events";
import { BoundedSet } from "./BoundedSet";
import { ConversationState, type Accepted } from "./ConversationState";
import { applyEntry, kindOf, type ChatMessage } from "./entries";

/**
 * How a message reached the app: `live`, `backlog`, `sent` (this device's own send, once
 * stored), `sync` (fetched to fill a gap: new to this device, maybe seen on another one) or
 * `history` (context: a conversation's newest page when first seen, or scrolling back).
 */
export type MessageSource = "live" | "backlog" | "sent" | "sync" | "history";

export type SyncDeps = {
  history(request: HistoryRequest): Promise<HistoryResult>;
  /** A message for the app: each conversation's in seq order, except history loaded by scrolling back. */
  deliver(message: ChatMessage, source: MessageSource): void;
  /** A text message changed by an edit, delete or reaction entry. */
  updated(message: ChatMessage): void;
};

export type SyncOptions = {
  /** Messages of one conversation held beyond a gap while it is filled. @default 1000 */
  maxAhead?: number;
  /** Text messages kept per conversation for messages() and for applying entries. @default 500 */
  maxCached?: number;
  /** Size of the page loaded when a conversation is first seen, and when scrolling back. @default 50 */
  pageSize?: number;
  /**
   * Conversations whose messages are held at once. Beyond it the least recently used one is
   * dropped (messages and position) and loaded again, from its newest page, when it is next
   * used (a message for it, loadOlder()). A catch-up after reconnecting loads at most this
   * many (the most recently active first); the others wait until they are used.
   * @default 20
   */
  maxConversations?: number;
};

/** history() pages while catching up: the protocol's largest. */
const FILL_PAGE = 100;

export class ConversationSync {
  private readonly states = new Map<string, ConversationState>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly cache = new Map<string, Map<string, ChatMessage>>();
  /** Ids handed out from below a conversation's window (scrolling back, old backlog). */
  private readonly older = new BoundedSet<string>(2000);
  private readonly maxAhead: number;
  private readonly maxCached: number;
  private readonly pageSize: number;
  private readonly maxConversations: number;

  constructor(
    private readonly deps: SyncDeps,
    options: SyncOptions = {},
  ) {
    this.maxAhead = options.maxAhead ?? 1000;
    this.maxCached = options.maxCached ?? 500;
    this.pageSize = options.pageSize ?? 50;
    this.maxConversations = options.maxConversations ?? 20;
  }

  /** Resolves once `message` reached the app, or was found to be a duplicate. */
  receive(message: ChatMessage, source: MessageSource): Promise<void> {
    return this.locked(message.conversationId, async (state) => {
      if (!state.known) await this.initialize(state, message.seq === 1);
      this.handle(state, state.accept(message), source);
      if (state.waiting > 0) await this.fill(state, 0);
    });
  }

  /** The server says the conversation reaches `lastSeq`: fetch whatever this device lacks. */
  catchUp(conversationId: string, lastSeq: number): Promise<void> {
    // Not held, and no room: it is loaded when it is used.
    if (!this.states.get(conversationId)?.known && this.heldCount() >= this.maxConversations) return Promise.resolve();
    return this.locked(conversationId, async (state) => {
      if (!state.known) return this.initialize(state, lastSeq === 0);
      if (lastSeq > state.high) await this.fill(state, lastSeq);
    });
  }

  /** Scrolling back: the page before the oldest message held. */
  loadOlder(conversationId: string, limit = this.pageSize): Promise<{ messages: ChatMessage[]; hasMore: boolean }> {
    return this.locked(conversationId, async (state) => {
      if (!state.known) {
        await this.initialize(state, false);
        return { messages: this.messages(conversationId), hasMore: (state.low ?? 1) > 1 };
      }
      if (state.low === null || state.low <= 1) return { messages: [], hasMore: false };
      const page = await this.deps.history({ conversationId, beforeSeq: state.low, limit });
      const fresh: ChatMessage[] = [];
      // Newest first, so the oldest loaded ends up as `low`; text messages carry their current state.
      for (const m of [...page.messages].reverse()) {
        state.loadedDownTo(m.seq);
        if (this.older.has(m.id)) continue;
        this.older.add(m.id);
        this.remember(m);
        fresh.unshift(m);
      }
      for (const m of fresh) this.deps.deliver(m, "history");
      return { messages: fresh, hasMore: page.hasMore };
    });
  }

  /** Text messages held for `conversationId`, by seq (none when it is not held: loadOlder() loads it). */
  messages(conversationId: string): ChatMessage[] {
    this.touch(conversationId);
    return [...(this.cache.get(conversationId)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  }

  /** A text message held, by id. */
  find(conversationId: string, id: string): ChatMessage | undefined {
    return this.cache.get(conversationId)?.get(id);
  }

  /** What the de-duplication holds right now: bounded whatever the traffic. */
  memory(): { conversations: number; waiting: number; olderIds: number; cached: number } {
    let waiting = 0;
    let cached = 0;
    for (const s of this.states.values()) waiting += s.waiting;
    for (const c of this.cache.values()) cached += c.size;
    return { conversations: this.states.size, waiting, olderIds: this.older.size, cached };
  }

  position(conversationId: string): { high: number; low: number | null } | undefined {
    const s = this.states.get(conversationId);
    return s?.known ? { high: s.high, low: s.low } : undefined;
  }

  /** First sight of a conversation: start from its newest page (older ones by scrolling back). */
  private async initialize(state: ConversationState, fromStart: boolean): Promise<void> {
    if (!fromStart) {
      const page = await this.deps.history({ conversationId: state.id, limit: this.pageSize });
      const first = page.messages[0];
      if (first) this.release(state.skipTo(first.seq - 1), "history");
      for (const m of page.messages) this.handle(state, state.accept(m), "history");
    }
    state.known = true;
  }

  /** Pages forward from `high` until nothing waits behind a gap and `target` is reached. */
  private async fill(state: ConversationState, target: number): Promise<void> {
    while (state.waiting > 0 || state.high < target) {
      const page = await this.deps.history({ conversationId: state.id, afterSeq: state.high, limit: FILL_PAGE });
      for (const m of page.messages) {
        // History skipping seqs means they are gone (expired): nothing will fill that gap.
        if (m.seq > state.high + 1) this.release(state.skipTo(m.seq - 1), "sync");
        this.handle(state, state.accept(m), "sync");
      }
      if (page.hasMore) continue;
      // The end of the stored log: whatever still waits is past seqs that no longer exist.
      const next = state.nextWaiting;
      if (next !== null) this.release(state.skipTo(next - 1), "sync");
      break;
    }
  }

  private handle(state: ConversationState, accepted: Accepted, source: MessageSource): void {
    if (accepted.kind === "released") this.release(accepted.messages, source);
    if (accepted.kind === "older" && !this.older.has(accepted.message.id)) {
      this.older.add(accepted.message.id);
      this.remember(accepted.message);
      this.deps.deliver(accepted.message, source);
    }
  }

  /** In seq order: entries are applied to their target as they pass. */
  private release(messages: ChatMessage[], source: MessageSource): void {
    for (const m of messages) {
      // Group entries are held with the text: a chat shows them as a line ("alice added carol").
      if (kindOf(m) === "text" || kindOf(m) === "group") this.remember(m);
      else this.applyToTarget(m);
      this.deps.deliver(m, source);
    }
  }

  private applyToTarget(entry: ChatMessage): void {
    const target = entry.refId ? this.find(entry.conversationId, entry.refId) : undefined;
    if (!target) return;
    const next = applyEntry(target, entry);
    if (next === target) return;
    this.cache.get(entry.conversationId)!.set(next.id, next);
    this.deps.updated(next);
  }

  private remember(message: ChatMessage): void {
    if (kindOf(message) !== "text" && kindOf(message) !== "group") return;
    let held = this.cache.get(message.conversationId);
    if (!held) this.cache.set(message.conversationId, (held = new Map()));
    held.set(message.id, message);
    if (held.size > this.maxCached) {
      let oldest: ChatMessage | undefined;
      for (const m of held.values()) if (!oldest || m.seq < oldest.seq) oldest = m;
      held.delete(oldest!.id);
    }
  }

  private state(id: string): ConversationState {
    let s = this.states.get(id);
    if (!s) this.states.set(id, (s = new ConversationState(id, this.maxAhead)));
    this.touch(id);
    return s;
  }

  /** Most recently used last (Map order). */
  private touch(id: string): void {
    const s = this.states.get(id);
    if (s) {
      this.states.delete(id);
      this.states.set(id, s);
    }
  }

  private heldCount(): number {
    let n = 0;
    for (const s of this.states.values()) if (s.known) n++;
    return n;
  }

  /**
   * Drops the least recently used conversations beyond maxConversations. One with work in
   * progress (its lock) or messages waiting behind a gap stays: dropping it would lose them.
   */
  private evict(): void {
    let excess = this.states.size - this.maxConversations;
    for (const [id, s] of this.states) {
      if (excess <= 0) break;
      if (this.locks.has(id) || s.waiting > 0) continue;
      this.states.delete(id);
      this.cache.delete(id);
      excess--;
    }
  }

  private locked<T>(id: string, work: (state: ConversationState) => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => work(this.state(id)));
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
      this.evict();
    });
    return run;
  }
}
