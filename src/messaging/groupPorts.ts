/**
 * What group membership needs from storage (storage/SqlGroupStore implements it). Kept
 * beside MessageStore rather than in it: membership changes are rare, admin-driven
 * transactions, not the batched hot path of sends.
 */
import type { ConversationSummary, Message } from "../protocol";
import type { GroupCommand } from "./groupRules";

export type GroupChangeRequest = {
  id: string;
  from: string;
  clientMsgId: string;
  conversationId: string;
  command: GroupCommand;
  createdAt: Date;
  expiresAt: Date;
  maxMembers: number;
};

export type GroupChangeResult =
  | {
      duplicate: false;
      message: Message;
      recipients: string[];
      /** Users the change added, and the conversation as they now see it (for `conversation:new`). */
      added: string[];
      summary: ConversationSummary | null;
    }
  | { duplicate: true; message: Message };

/**
 * Which seqs of a conversation a user may see: a member from `fromSeq` on; someone who left
 * or was removed from `fromSeq` to `untilSeq` (the entry that removed them) included.
 */
export type Visibility =
  | { state: "not_found" }
  | { state: "stranger" }
  | { state: "member"; fromSeq: number }
  | { state: "former"; fromSeq: number; untilSeq: number };

export interface GroupStore {
  /**
   * Judges the change by ./groupRules against the members as committed, under the
   * conversation's row lock, and in the same transaction moves the members, takes the next
   * seq and stores the `group` entry with one delivery row per recipient. A (from,
   * clientMsgId) already stored answers the original as a duplicate, before any judging.
   * Refusals reject with the verdict's AppError and change nothing.
   */
  change(req: GroupChangeRequest): Promise<GroupChangeResult>;
}
