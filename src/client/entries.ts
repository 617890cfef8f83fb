/**
 * Version 2 log entries (edit, delete, reaction) applied to the text message they act on.
 * Applied in seq order they converge on the server's state, even on top of a text message
 * that already carries a later state (the entries after it bring it back to the same end).
 */
import type { Message, MessageKind, Reaction } from "../protocol/events";

export type { Reaction };
export type EntryKind = MessageKind;

/** A message as the SDK hands it out: v1 fields always, v2 fields when the server sends them. */
export type ChatMessage = Message & {
  kind?: EntryKind;
  refId?: string | null;
  editedAt?: string | null;
  deletedAt?: string | null;
  reactions?: Reaction[];
};

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export const kindOf = (m: ChatMessage): EntryKind => m.kind ?? "text";

/** `target` with `entry` applied; `target` itself is left unchanged. */
export function applyEntry(target: ChatMessage, entry: ChatMessage): ChatMessage {
  switch (kindOf(entry)) {
    case "edit":
      if (target.deletedAt) return target;
      return { ...target, content: entry.content, editedAt: entry.createdAt };
    case "delete":
      return { ...target, content: "", deletedAt: target.deletedAt ?? entry.createdAt, reactions: [], media: null };
    case "reaction": {
      if (target.deletedAt) return target;
      // One reaction per user: drop theirs, then add the new one ("" only removes).
      const reactions = (target.reactions ?? [])
        .map((r) => ({ emoji: r.emoji, userIds: r.userIds.filter((u) => u !== entry.from) }))
        .filter((r) => r.userIds.length > 0);
      if (entry.content !== "") {
        const existing = reactions.find((r) => r.emoji === entry.content);
        if (existing) existing.userIds = [...existing.userIds, entry.from].sort(byCodeUnits);
        else reactions.push({ emoji: entry.content, userIds: [entry.from] });
      }
      // The server's order: emoji ascending, user ids ascending.
      return { ...target, reactions: reactions.sort((a, b) => byCodeUnits(a.emoji, b.emoji)) };
    }
    default:
      return target;
  }
}
