import type { Message } from "../../src/protocol";
import { applyEntry } from "../../src/client/entries";

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
    texts.set(target.id, applyEntry(target, m) as Message);
  }
  return texts;
}
