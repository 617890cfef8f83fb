/**
 * The CLI's view of messages: each text message it shows gets a number (`#3`), by which
 * `edit 3 …`, `delete 3` and `react 3 👍` name it, and its current state, to which the
 * edits, deletes and reactions that arrive are applied in seq order (docs/protocol.md).
 */
import { mediaNote } from "./cliMedia";
import type { Message } from "../protocol";
import { applyEntry } from "./entries";

/** Content comes from other users: one line, no control characters (no ANSI escapes). */
export const clean = (text: string) =>
  text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === "\n" ? "\\n" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));

export type EntryCommand = { kind: "edit" | "delete" | "react"; n: number; text: string };

/** `edit <n> <text>`, `delete <n>`, `react <n> <emoji>` (`react <n>` alone removes yours). */
export function parseEntryCommand(line: string): EntryCommand | null {
  const match = /^(edit|delete|react)\s+#?(\d+)(?:\s+(.+))?$/.exec(line);
  if (!match) return null;
  const kind = match[1] as EntryCommand["kind"];
  const text = match[3] ?? "";
  if ((kind === "edit" && text === "") || (kind === "delete" && text !== "")) return null;
  return { kind, n: Number(match[2]), text };
}

export class Board {
  private readonly ids: string[] = [];
  private readonly numbers = new Map<string, number>();
  private readonly texts = new Map<string, Message>();
  /** Per message, the seq of the last entry applied: an entry seen twice applies once. */
  private readonly applied = new Map<string, number>();

  /** Keeps a text message (a newer copy replaces the state), returns its number. */
  remember(m: Message): number {
    let n = this.numbers.get(m.id);
    if (n === undefined) {
      this.ids.push(m.id);
      n = this.ids.length;
      this.numbers.set(m.id, n);
    }
    this.texts.set(m.id, m);
    return n;
  }

  idOf(n: number): string | undefined {
    return this.ids[n - 1];
  }

  /** Message #n as it stands now. */
  messageOf(n: number): Message | undefined {
    const id = this.ids[n - 1];
    return id === undefined ? undefined : this.texts.get(id);
  }

  numberOf(id: string): number | undefined {
    return this.numbers.get(id);
  }

  /** Applies an entry to the text it acts on; null when that text was never shown here. */
  apply(entry: Message): { n: number; message: Message } | null {
    const target = entry.refId ? this.texts.get(entry.refId) : undefined;
    if (!target) return null;
    const n = this.numbers.get(target.id)!;
    if ((this.applied.get(target.id) ?? 0) >= entry.seq) return { n, message: target };
    this.applied.set(target.id, entry.seq);
    const next = applyEntry(target, entry) as Message;
    this.texts.set(target.id, next);
    return { n, message: next };
  }

  /** `#3 [alice] hello (edited)  👍 bob carol · 😂 alice`, or `#3 [alice] message deleted`. */
  line(m: Message): string {
    const n = this.numbers.get(m.id);
    const group = m.to === null ? ` (group ${m.conversationId})` : "";
    const media = m.media ? `${m.content ? " " : ""}${mediaNote(m.media)}` : "";
    const body = m.deletedAt ? "message deleted" : `${clean(m.content)}${media}${m.editedAt ? " (edited)" : ""}`;
    const reactions = m.reactions.map((r) => `${clean(r.emoji)} ${r.userIds.join(" ")}`).join(" · ");
    return `#${n ?? "?"} [${m.from}] ${body}${group}${reactions ? `  ${reactions}` : ""}`;
  }

  /** An entry whose message this CLI never showed. */
  static unknown(entry: Message): string {
    const what = entry.kind === "edit" ? "edited" : entry.kind === "delete" ? "deleted" : "reacted to";
    return `[${entry.from}] ${what} a message not shown here`;
  }
}
