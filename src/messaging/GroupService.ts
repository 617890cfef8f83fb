import { v7 as uuidv7 } from "uuid";
import type { Clock } from "../clock";
import { AppError, type Message, type SendResult } from "../protocol";
import type { GroupStore } from "./groupPorts";
import { messageIdAt } from "./messageIds";
import type { GroupCommand } from "./groupRules";
import type { MessageStore, Notifier } from "./ports";

export type GroupOptions = {
  messageTtlMs: number;
  /** GROUP_MAX_MEMBERS: the most members a group may have, the creator included. */
  maxMembers: number;
  /** GROUP_CREATE_PER_HOUR: groups one user may create in an hour; 0 = no cap. */
  createdPerHour: number;
};

export type GroupChangeCommand = { clientMsgId: string; conversationId: string; command: GroupCommand };

/**
 * Offers a stored log entry the way a sent message is offered: live to each recipient
 * (with a receipt), and to the actor's other devices but `origin` (MessagingService.publish).
 */
export type Publish = (from: string, message: Message, recipients: string[], origin?: string) => void;

/**
 * Groups: creating them, and the membership changes that are entries of their log. It
 * knows nothing of Socket.IO or SQL: the rules are ./groupRules, applied by the store under
 * the conversation's lock; delivery is the messaging core's.
 */
export class GroupService {
  constructor(
    private readonly store: GroupStore,
    private readonly conversations: Pick<MessageStore, "createGroup">,
    private readonly publish: Publish,
    private readonly notifier: Pick<Notifier, "conversationCreated">,
    private readonly clock: Clock,
    private readonly options: GroupOptions,
  ) {}

  async create(creator: string, title: string, members: string[]): Promise<string> {
    const all = new Set([creator, ...members]);
    const max = this.options.maxMembers;
    if (all.size < 2 || all.size > max) {
      throw new AppError("BAD_REQUEST", `a group has 2-${max} members, the creator included`);
    }
    const summary = await this.conversations.createGroup({
      id: uuidv7(),
      title,
      creator,
      members: [...all],
      at: this.clock.now(),
      ...(this.options.createdPerHour > 0 ? { createdPerHour: this.options.createdPerHour } : {}),
    });
    this.notifier.conversationCreated(summary.members, summary);
    return summary.id;
  }

  /** Stored (and its seq taken) before it is acknowledged; offered live after that. */
  async change(actor: string, cmd: GroupChangeCommand, origin?: string): Promise<SendResult> {
    const createdAt = this.clock.now();
    const result = await this.store.change({
      id: messageIdAt(createdAt),
      from: actor,
      clientMsgId: cmd.clientMsgId,
      conversationId: cmd.conversationId,
      command: cmd.command,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + this.options.messageTtlMs),
      maxMembers: this.options.maxMembers,
    });
    if (!result.duplicate) {
      // The new members learn the group first, then get the entry that added them.
      if (result.summary) this.notifier.conversationCreated(result.added, result.summary);
      this.publish(actor, result.message, result.recipients, origin);
    }
    return { message: result.message, duplicate: result.duplicate };
  }
}
