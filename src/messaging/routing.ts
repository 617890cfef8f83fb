/**
 * Where a message goes and who may send it: domain rules that storage applies inside its
 * one write statement (see MessageStore.append), and the core applies to reads.
 */
import { AppError } from "../protocol";

/** A direct conversation is the unordered pair: keyed by the sorted ids (a space cannot occur in a user id). */
export const directKey = (a: string, b: string): string => (a < b ? `${a} ${b}` : `${b} ${a}`);

export const noSuchConversation = (): AppError => new AppError("NOT_FOUND", "no such conversation");
export const notAMember = (): AppError => new AppError("FORBIDDEN", "not a member of this conversation");

/**
 * `version`: the seq of its last membership change, as read (the write checks it again);
 * `departed`: users who left or were removed, where the reads looked for them.
 */
export type ConversationFacts = { kind: string; members: string[]; version?: number; departed?: string[] };

/**
 * A send to an existing conversation: refused if it does not exist (NOT_FOUND) or the sender
 * is not a member (FORBIDDEN); otherwise its `to` is the other member of a direct
 * conversation, null in a group.
 */
export function routeToConversation(
  from: string,
  conversation: ConversationFacts | undefined,
): { ok: true; to: string | null } | { ok: false; error: AppError } {
  if (!conversation) return { ok: false, error: noSuchConversation() };
  if (!conversation.members.includes(from)) return { ok: false, error: notAMember() };
  const to = conversation.kind === "direct" ? (conversation.members.find((m) => m !== from) ?? null) : null;
  return { ok: true, to };
}
