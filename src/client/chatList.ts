/**
 * Reading the chat list from the server in the pieces the SDK holds: the top of it (the
 * first sync, loadMoreConversations()) and single conversations the bounded list dropped
 * or never held (a message arrived for one, a group's receipts need its members).
 */
import type { ConversationListRequest, ConversationListResult, ConversationSummary } from "../protocol/events";
import { CONVERSATION_IDS_MAX, CONVERSATION_PAGE_MAX } from "../protocol/packets";
import { Conversations } from "./Conversations";

export type ListCall = (payload: ConversationListRequest) => Promise<ConversationListResult>;

/**
 * The bounded chat list of a client, wired to the server: a summary it drops or never held
 * is fetched by id when a message or a group's receipt needs it.
 */
export function createChatList(
  me: () => string | undefined,
  changed: (summary: ConversationSummary) => void,
  list: ListCall,
  maxListed?: number,
): Conversations {
  const fetcher = new SummaryFetcher(list, (summary) => conversations.upsert(summary));
  const conversations = new Conversations(me, changed, { maxListed, missing: (id) => fetcher.want(id) });
  return conversations;
}

/** The top of the chat list, as many as it holds now, from the server (its unread counts): the conversations read. */
export async function readTop(conversations: Conversations, list: ListCall): Promise<ConversationSummary[]> {
  const top = await fetchTop(list, conversations.allowance);
  conversations.replaceAll(top.conversations, top.hasMore);
  return top.conversations;
}

/** The direct conversation with `userId`: held, or asked of the server (`peer`); undefined when there is none yet. */
export async function findDirect(conversations: Conversations, list: ListCall, userId: string): Promise<ConversationSummary | undefined> {
  const held = conversations.directWith(userId);
  if (held) return held;
  const [found] = (await list({ peer: userId })).conversations;
  if (!found) return undefined;
  conversations.upsert(found);
  return conversations.get(found.id);
}

/** The `n` most recently active conversations, in pages of at most the protocol's largest. */
export async function fetchTop(list: ListCall, n: number): Promise<ConversationListResult> {
  const conversations: ConversationSummary[] = [];
  let before: string | undefined;
  for (;;) {
    const page = await list({ limit: Math.min(n - conversations.length, CONVERSATION_PAGE_MAX), ...(before ? { before } : {}) });
    conversations.push(...page.conversations);
    if (!page.hasMore || conversations.length >= n || !page.next) return { conversations, hasMore: page.hasMore, next: page.next };
    before = page.next;
  }
}

/**
 * Fetches summaries asked for by id, each at most once at a time; the ids asked for in one
 * tick go in one request. A failed fetch (offline) is forgotten: the next ask tries again.
 */
export class SummaryFetcher {
  private readonly wanted = new Set<string>();
  private readonly inFlight = new Set<string>();
  private scheduled = false;

  constructor(
    private readonly list: ListCall,
    private readonly got: (summary: ConversationSummary) => void,
  ) {}

  want(conversationId: string): void {
    if (this.inFlight.has(conversationId)) return;
    this.wanted.add(conversationId);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const ids = [...this.wanted].slice(0, CONVERSATION_IDS_MAX);
    for (const id of ids) {
      this.wanted.delete(id);
      this.inFlight.add(id);
    }
    if (this.wanted.size) this.want([...this.wanted][0]!);
    try {
      const { conversations } = await this.list({ conversationIds: ids });
      for (const c of conversations) this.got(c);
    } catch {
      // Offline or refused: asked again when it is next needed.
    } finally {
      for (const id of ids) this.inFlight.delete(id);
    }
  }
}
