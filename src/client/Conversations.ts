/**
 * The conversation list as the app shows it: summaries from `conversation:list` and
 * `conversation:new`, kept current by the messages that pass (last message, unread count),
 * and the ids of unread messages from others, which markRead() sends as `message:read`.
 * A read made on another of the user's devices (`message:status` read by the user) clears
 * them here too.
 *
 * Bounded: it holds the summaries of at most `maxListed` conversations (plus what
 * loadMore() asked for), the least recently active or used dropped first. A dropped one
 * comes back when the app loads more, finds it (`peer`), or when a message arrives for it:
 * then `missing` fetches its summary, with the server's unread count.
 */
import type { ConversationSummary } from "../protocol/events";
import type { ChatMessage } from "./entries";
import { kindOf } from "./entries";
import { applyGroupChange } from "./groupEntries";

export class Conversations {
  private readonly summaries = new Map<string, ConversationSummary>();
  private readonly unreadIds = new Map<string, Set<string>>();
  /** Which conversation an unread id is in, for reads announced by id only. */
  private readonly conversationOf = new Map<string, string>();
  /** Conversations whose summary came from the server (members known), not made up from a message. */
  private readonly fromServer = new Set<string>();

  /** How many summaries may be held now: maxListed, raised by what loadMore() asked for. */
  allowance: number;
  /** The server has conversations this list does not hold (a page's hasMore, or one dropped). */
  hasMore = false;

  constructor(
    private readonly me: () => string | undefined,
    private readonly changed: (summary: ConversationSummary) => void,
    private readonly options: { maxListed?: number; missing?: (conversationId: string) => void } = {},
  ) {
    this.allowance = options.maxListed ?? DEFAULT_MAX_LISTED;
  }

  /** A fresh `conversation:list` page from the top: its unread counts are the server's truth at that moment. */
  replaceAll(list: ConversationSummary[], hasMore = false): void {
    // Oldest first, so the most recently active end up most recently used.
    for (const c of [...list].reverse()) {
      this.summaries.delete(c.id);
      this.summaries.set(c.id, this.compact({ ...c }));
      this.fromServer.add(c.id);
    }
    this.hasMore = hasMore;
    this.trim();
  }

  /**
   * The server's summary (conversation:new, or fetched): it wins, except that a message
   * that arrived here after the server read it keeps its place as the last one.
   */
  upsert(summary: ConversationSummary): void {
    const held = this.summaries.get(summary.id);
    const next = { ...held, ...summary };
    if (held && held.lastSeq > summary.lastSeq) {
      next.lastSeq = held.lastSeq;
      next.lastMessage = held.lastMessage;
      next.unread = Math.max(held.unread, summary.unread);
    }
    this.fromServer.add(summary.id);
    this.summaries.delete(summary.id);
    this.summaries.set(summary.id, this.compact(next));
    this.trim();
    if (this.summaries.has(summary.id)) this.changed(this.summaries.get(summary.id)!);
  }

  /**
   * Who this user's messages in the conversation go to, for the group ticks rule: null for
   * a direct conversation, the members but this user for a group (as the server last listed
   * them: `conversation:list`, `conversation:new`), undefined while that is not known.
   */
  recipients(conversationId: string): string[] | null | undefined {
    const c = this.summaries.get(conversationId);
    if (!c) {
      // Dropped from the list (or never listed): fetch it; its receipts count once it is here.
      this.options.missing?.(conversationId);
      return undefined;
    }
    if (c.kind === "direct") return null;
    if (!this.fromServer.has(conversationId)) return undefined;
    const me = this.me();
    return c.members.filter((m) => m !== me);
  }

  /** Every conversation, most recently active first. */
  list(): ConversationSummary[] {
    const at = (c: ConversationSummary) => c.lastMessage?.createdAt ?? "";
    return [...this.summaries.values()].sort((a, b) => at(b).localeCompare(at(a)));
  }

  /** Conversations in the list (each with its last message). */
  get size(): number {
    return this.summaries.size;
  }

  /** A summary the app asks for is in use: it is dropped last. */
  get(id: string): ConversationSummary | undefined {
    return this.touch(id);
  }

  /** The direct conversation with `userId`, if this list holds it. */
  directWith(userId: string): ConversationSummary | undefined {
    const me = this.me();
    const found = this.list().find(
      (c) => c.kind === "direct" && c.members.includes(userId) && (userId !== me || c.members.every((m) => m === me)),
    );
    return found && this.touch(found.id);
  }

  /**
   * A message reached the app; `counts` when it may be new to this user (live, backlog, or
   * fetched to fill a gap; not history). It is unread when it is beyond the lastSeq known
   * so far: what `conversation:list` last counted is in its `unread` already (adoptUnread
   * finds those ids), and a message a gap held back (two devices' sends crossing) is as
   * new as a live one, though it comes from history (its live copy then is a duplicate).
   */
  message(m: ChatMessage, counts: boolean): void {
    let c = this.summaries.get(m.conversationId);
    if (!c) {
      c = {
        id: m.conversationId,
        kind: m.to === null ? "group" : "direct",
        title: null,
        members: m.to === null ? [m.from] : [...new Set([m.from, m.to])],
        admins: [],
        member: true,
        lastSeq: 0,
        unread: 0,
        lastMessage: null,
      };
      this.summaries.set(c.id, c);
      // Made up from the message: the server knows its members and unread count.
      this.options.missing?.(c.id);
    } else {
      this.touch(c.id);
    }
    const beyond = m.seq > c.lastSeq;
    if (m.seq >= c.lastSeq) {
      c.lastSeq = m.seq;
      if (kindOf(m) === "text") c.lastMessage = this.share(c, m);
      // A membership or title change newer than what the summary shows.
      if (kindOf(m) === "group" && m.group) {
        c = Object.assign(c, applyGroupChange(c, m.group, this.me()));
      }
    }
    // Deleted for everyone: no longer unread (as the server counts it).
    if (kindOf(m) === "delete" && m.refId && this.conversationOf.has(m.refId)) this.read([m.refId]);
    if (counts && beyond && kindOf(m) === "text" && m.from !== this.me() && !m.deletedAt) {
      const ids = this.ids(c.id);
      if (!ids.has(m.id)) {
        ids.add(m.id);
        this.conversationOf.set(m.id, c.id);
        c.unread += 1;
      }
    }
    this.changed(c);
    this.trim();
  }

  /** After a list: the newest `unread` messages from others held are the unread ones. */
  adoptUnread(conversationId: string, held: ChatMessage[]): void {
    const c = this.summaries.get(conversationId);
    if (!c) return;
    const me = this.me();
    const fromOthers = held.filter((m) => m.from !== me && kindOf(m) === "text" && !m.deletedAt).sort((a, b) => b.seq - a.seq);
    // A set only where there is an id to keep: this runs for every conversation listed.
    for (const m of fromOthers.slice(0, c.unread)) {
      this.ids(conversationId).add(m.id);
      this.conversationOf.set(m.id, conversationId);
    }
    this.changed(c);
  }

  unread(conversationId: string): string[] {
    return [...(this.unreadIds.get(conversationId) ?? [])];
  }

  /** These ids were read (here or on another device of the user). */
  read(ids: string[]): void {
    const touched = new Set<string>();
    for (const id of ids) {
      const cid = this.conversationOf.get(id);
      if (!cid) continue;
      this.conversationOf.delete(id);
      const ids = this.unreadIds.get(cid);
      if (ids?.delete(id)) {
        if (ids.size === 0) this.unreadIds.delete(cid);
        const c = this.summaries.get(cid)!;
        c.unread = Math.max(0, c.unread - 1);
        touched.add(cid);
      }
    }
    for (const cid of touched) this.changed(this.summaries.get(cid)!);
  }

  /**
   * The ids markRead() sent are read: what the server counted beyond the ids held is read
   * too. A message that arrived while the reads were on their way stays unread: clearing
   * it as well (as before) left it unread on the server and at 0 here, for good.
   */
  allRead(conversationId: string): void {
    const c = this.summaries.get(conversationId);
    const left = this.unreadIds.get(conversationId)?.size ?? 0;
    if (c && c.unread !== left) {
      c.unread = left;
      this.changed(c);
    }
  }


  /**
   * One summary is held per conversation the user has, for the whole session: the chat
   * list grows with the user's conversations, so each summary should cost little. A string
   * that says the same thing again (this user's id in every summary, the peer in `members`
   * and in the last message's `from`/`to`, the conversation id in the last message) becomes
   * one string instead of a copy parsed from each packet: same values, less heap
   * (docs/benchmarks.md, "Soak").
   */
  private compact(c: ConversationSummary): ConversationSummary {
    const me = this.me();
    if (me !== undefined && c.members.includes(me)) c.members = c.members.map((u) => (u === me ? me : u));
    if (c.lastMessage) c.lastMessage = this.share(c, c.lastMessage);
    return c;
  }

  /** `m` (a message this summary shows last) with its repeated strings shared with the summary; changed in place, same values. */
  private share<M extends ChatMessage | NonNullable<ConversationSummary["lastMessage"]>>(c: ConversationSummary, m: M): M {
    const same = (s: string) => c.members.find((u) => u === s) ?? s;
    if (m.conversationId === c.id) m.conversationId = c.id;
    m.from = same(m.from);
    if (m.to !== null) m.to = same(m.to);
    return m;
  }

  /** Most recently used last (Map order). */
  private touch(id: string): ConversationSummary | undefined {
    const c = this.summaries.get(id);
    if (c) {
      this.summaries.delete(id);
      this.summaries.set(id, c);
    }
    return c;
  }

  /** Drops the least recently used summaries beyond the allowance, with their unread ids. */
  private trim(): void {
    for (const id of this.summaries.keys()) {
      if (this.summaries.size <= this.allowance) return;
      this.summaries.delete(id);
      this.fromServer.delete(id);
      for (const unreadId of this.unreadIds.get(id) ?? []) this.conversationOf.delete(unreadId);
      this.unreadIds.delete(id);
      this.hasMore = true;
    }
  }

  private ids(conversationId: string): Set<string> {
    let s = this.unreadIds.get(conversationId);
    if (!s) this.unreadIds.set(conversationId, (s = new Set()));
    return s;
  }
}

/** Summaries held by default: a chat list's first screens. */
export const DEFAULT_MAX_LISTED = 30;
