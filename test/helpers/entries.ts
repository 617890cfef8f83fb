import type { Message } from "../../src/protocol";

/**
 * What a client does with the log (docs/protocol.md, "Edits, deletes and reactions"): keep
 * each text message, apply every entry to its target in seq order. Reapplying an entry to a
 * message that already carries its effect changes nothing, so the order messages arrived in
 * (live, backlog, history) does not matter, only seq.
 */
export function applyLog(messages: Iterable<Message>): Map<string, Message> {
  const sorted = [...messages].sort((a, b) => a.conversationId.localeCompare(b.conversationId) || a.seq - b.seq);
  const texts = new Map<string, Message>();
  for (const m of sorted) {
    if (m.kind === "text") {
      if (!texts.has(m.id)) texts.set(m.id, structuredClone(m));
      continue;
    }
    const target = texts.get(m.refId!);
    if (!target) continue; // never seen (e.g. expired): nothing to show
    if (m.kind === "edit") {
      target.content = m.content;
      target.editedAt = m.createdAt;
    } else if (m.kind === "delete") {
      target.content = "";
      target.deletedAt = m.createdAt;
      target.reactions = [];
    } else {
      const others = target.reactions
        .map((r) => ({ emoji: r.emoji, userIds: r.userIds.filter((u) => u !== m.from) }))
        .filter((r) => r.userIds.length > 0);
      if (m.content !== "") {
        const same = others.find((r) => r.emoji === m.content);
        if (same) same.userIds = [...same.userIds, m.from].sort();
        else others.push({ emoji: m.content, userIds: [m.from] });
      }
      target.reactions = others.sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0));
    }
  }
  return texts;
}
