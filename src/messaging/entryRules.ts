/**
 * The rules for edits, deletes and reactions, as one pure function. The store applies it
 * inside its group commit, to the acted-on message as it stands at that moment (and as
 * earlier requests of the same batch left it), so two requests racing on one message are
 * judged in commit order.
 */
import { AppError, type MessageKind } from "../protocol";

/** Group entries are not acted on by messages: groupRules.ts judges them. */
export type EntryKind = Exclude<MessageKind, "text" | "group">;

/** The text message an entry acts on, as the store sees it. */
export type EntryTarget = {
  kind: MessageKind;
  from: string;
  createdAt: Date;
  expiresAt: Date;
  deleted: boolean;
  /** Whether the acting user belongs to the message's conversation. */
  actorIsMember: boolean;
  /**
   * The acting user left or was removed from the message's conversation: they knew the
   * message, and are told they may no longer act there (FORBIDDEN) rather than NOT_FOUND.
   */
  actorDeparted?: boolean;
};

export type EntryAction = {
  kind: EntryKind;
  from: string;
  /** Server time of the request: windows are measured from the target's createdAt to this. */
  at: Date;
  /** Edit and delete: how long after its createdAt a message may be acted on. */
  windowMs: number | null;
};

/** `repeat`: a delete of a deleted message, answered with the first delete entry (duplicate). */
export type Verdict = { ok: true } | { ok: false; error: AppError } | { repeat: true };

const refuse = (code: "NOT_FOUND" | "FORBIDDEN" | "BAD_REQUEST", message: string): Verdict => ({
  ok: false,
  error: new AppError(code, message),
});

export function judgeEntry(action: EntryAction, target: EntryTarget | undefined): Verdict {
  if (target && !target.actorIsMember && target.actorDeparted && target.expiresAt.getTime() > action.at.getTime()) {
    return refuse("FORBIDDEN", "you are no longer a member of this conversation");
  }
  // A message in a conversation you are not in is one you cannot know of: same answer as none.
  if (!target || !target.actorIsMember || target.expiresAt.getTime() <= action.at.getTime()) {
    return refuse("NOT_FOUND", "no such message (unknown, expired, or not in your conversations)");
  }
  if (target.kind !== "text") {
    return refuse("BAD_REQUEST", `messageId names a ${target.kind} entry: only text messages can be edited, deleted or reacted to`);
  }
  const late = action.windowMs !== null && action.at.getTime() - target.createdAt.getTime() > action.windowMs;
  switch (action.kind) {
    case "edit":
      if (target.from !== action.from) return refuse("FORBIDDEN", "only the sender can edit a message");
      if (target.deleted) return refuse("FORBIDDEN", "the message was deleted: it can no longer be edited");
      if (late) return refuse("FORBIDDEN", `a message can be edited only within ${duration(action.windowMs!)} of sending`);
      return { ok: true };
    case "delete":
      if (target.from !== action.from) return refuse("FORBIDDEN", "only the sender can delete a message");
      if (target.deleted) return { repeat: true };
      if (late) return refuse("FORBIDDEN", `a message can be deleted only within ${duration(action.windowMs!)} of sending`);
      return { ok: true };
    case "reaction":
      if (target.deleted) return refuse("FORBIDDEN", "the message was deleted: it can no longer be reacted to");
      return { ok: true };
  }
}

/** "15 minutes", "48 hours", "1500 ms": how a window reads in an error message. */
export function duration(ms: number): string {
  const units: [number, string][] = [
    [3_600_000, "hour"],
    [60_000, "minute"],
    [1000, "second"],
  ];
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}${ms === size ? "" : "s"}`;
  }
  return `${ms} ms`;
}
