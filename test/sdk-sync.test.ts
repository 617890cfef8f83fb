import { expect } from "chai";
import { ConversationSync, type MessageSource } from "../src/client/ConversationSync";
import type { ChatMessage } from "../src/client/entries";
import type { HistoryRequest, HistoryResult } from "../src/protocol";

const CID = "0190f0f0-0000-7000-8000-000000000001";

/** A conversation log on a fake server, answering message:history as the real one pages it. */
class FakeLog {
  readonly messages: ChatMessage[] = [];
  requests: HistoryRequest[] = [];

  add(from: string, content: string, extra: Partial<ChatMessage> = {}): ChatMessage {
    const seq = this.messages.length + 1;
    const m: ChatMessage = {
      id: `00000000-0000-7000-8000-${String(seq).padStart(12, "0")}`,
      clientMsgId: `c${seq}`,
      conversationId: CID,
      seq,
      from,
      to: from === "alice" ? "bob" : "alice",
      content,
      createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
      expiresAt: new Date(Date.UTC(2026, 1, 1)).toISOString(),
      kind: "text",
      refId: null,
      editedAt: null,
      deletedAt: null,
      reactions: [],
      media: null,
      group: null,
      ...extra,
    };
    this.messages.push(m);
    return m;
  }

  history = async (req: HistoryRequest): Promise<HistoryResult> => {
    this.requests.push(req);
    const limit = req.limit ?? 50;
    let list = this.messages.filter((m) => (req.afterSeq === undefined || m.seq > req.afterSeq) && (req.beforeSeq === undefined || m.seq < req.beforeSeq));
    const hasMore = list.length > limit;
    list = req.afterSeq !== undefined ? list.slice(0, limit) : list.slice(-limit);
    return { messages: list, hasMore };
  };
}

function syncOver(log: FakeLog, options = {}) {
  const delivered: [ChatMessage, MessageSource][] = [];
  const updated: ChatMessage[] = [];
  const sync = new ConversationSync(
    { history: log.history, deliver: (m, s) => delivered.push([m, s]), updated: (m) => updated.push(m) },
    options,
  );
  return { sync, delivered, updated };
}

describe("SDK conversation sync (seq order, gap-fill, bounded de-duplication)", () => {
  it("hands every message over once, in seq order, however often and in whatever order it arrives, in bounded memory", async () => {
    const log = new FakeLog();
    const { sync, delivered } = syncOver(log, { maxAhead: 64, maxCached: 100 });
    await sync.receive(log.add("bob", "first"), "live");
    const total = 5000;
    for (let i = 2; i <= total; i++) log.add("bob", `m${i}`);
    // Arrivals in windows of 8, reversed, each twice (at-least-once delivery redelivers).
    for (let start = 2; start <= total; start += 8) {
      const window = log.messages.slice(start - 1, start + 7).reverse();
      for (const m of [...window, ...window]) await sync.receive(m, "live");
    }
    expect(delivered.map(([m]) => m.seq)).to.deep.equal(Array.from({ length: total }, (_, i) => i + 1));
    const memory = sync.memory();
    expect(memory.waiting).to.equal(0);
    expect(memory.cached).to.equal(100);
    expect(memory.olderIds).to.equal(0);
    // Old duplicates long after: still dropped, with nothing remembered per message.
    for (const m of log.messages.slice(0, 50)) await sync.receive(m, "live");
    expect(delivered).to.have.length(total);
  });

  it("fills a gap from history (afterSeq), paging, before handing over what came after it", async () => {
    const log = new FakeLog();
    const { sync, delivered } = syncOver(log);
    await sync.receive(log.add("bob", "m1"), "live");
    for (let i = 2; i <= 250; i++) log.add("bob", `m${i}`);
    await sync.receive(log.messages[249]!, "live");
    expect(delivered.map(([m]) => m.seq)).to.deep.equal(Array.from({ length: 250 }, (_, i) => i + 1));
    expect(log.requests.map((r) => r.afterSeq)).to.deep.equal([1, 101, 201]);
    expect(delivered[1]![1]).to.equal("sync");
  });

  it("catches up to conversation:list's lastSeq, and skips seqs that expired", async () => {
    const log = new FakeLog();
    const { sync, delivered } = syncOver(log);
    await sync.receive(log.add("bob", "m1"), "live");
    for (let i = 2; i <= 10; i++) log.add("bob", `m${i}`);
    log.messages.splice(1, 4); // seq 2..5 expired and were swept
    await sync.catchUp(CID, 10);
    expect(delivered.map(([m]) => m.seq)).to.deep.equal([1, 6, 7, 8, 9, 10]);
    expect(sync.position(CID)).to.deep.equal({ high: 10, low: 1 });
  });

  it("starts a conversation first seen mid-way from its newest page, and scrolls back from there", async () => {
    const log = new FakeLog();
    for (let i = 1; i <= 120; i++) log.add("bob", `m${i}`);
    const { sync, delivered } = syncOver(log, { pageSize: 50 });
    await sync.receive(log.messages[119]!, "backlog");
    expect(delivered.map(([m]) => m.seq)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i + 71));
    const older = await sync.loadOlder(CID);
    expect(older.messages.map((m) => m.seq)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i + 21));
    expect(older.hasMore).to.equal(true);
    expect((await sync.loadOlder(CID)).hasMore).to.equal(false);
    expect((await sync.loadOlder(CID)).messages).to.deep.equal([]);
    expect(sync.messages(CID).map((m) => m.seq)).to.deep.equal(Array.from({ length: 120 }, (_, i) => i + 1));
  });

  it("applies v2 edit, reaction and delete entries to their message in seq order", async () => {
    const log = new FakeLog();
    const { sync, updated } = syncOver(log);
    const text = log.add("alice", "helo");
    const entry = (from: string, kind: ChatMessage["kind"], content: string) => log.add(from, content, { kind, refId: text.id });
    const edit = entry("alice", "edit", "hello");
    entry("bob", "reaction", "👍");
    entry("carol", "reaction", "👍");
    entry("bob", "reaction", "");
    for (const m of log.messages) await sync.receive(m, "live");
    expect(sync.find(CID, text.id)).to.deep.include({ content: "hello", editedAt: edit.createdAt, reactions: [{ emoji: "👍", userIds: ["carol"] }] });
    const del = entry("alice", "delete", "");
    await sync.receive(del, "live");
    expect(sync.find(CID, text.id)).to.deep.include({ content: "", deletedAt: del.createdAt, reactions: [] });
    expect(updated).to.have.length(5);
    // Entries are not text: not counted as messages to show.
    expect(sync.messages(CID).map((m) => m.id)).to.deep.equal([text.id]);
  });
});
