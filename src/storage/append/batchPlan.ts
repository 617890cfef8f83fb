import { AppError, type MessageKind } from "../../protocol";
import type { AppendRequest, AppendResult, EntryAppend } from "../../messaging/ports";
import { judgeEntry } from "../../messaging/entryRules";
import { directKey, routeToConversation, type ConversationFacts } from "../../messaging/routing";
import { toMessage, type MessageRow } from "../rows";
import type { BatchOutcome } from "../GroupCommit";

export const senderKey = (r: { from: string; clientMsgId: string }) => `${r.from}\n${r.clientMsgId}`;

/**
 * One request as the write statement sees it: `accept` false means the rules refused it (it
 * is still probed, so a retry of an already stored message is answered as a duplicate).
 * A direct message carries its conversation's key; anything else, its conversation's id.
 */
export type BatchRow = {
  index: number;
  req: AppendRequest;
  accept: boolean;
  conversationId: string | null;
  directKey: string | null;
  to: string | null;
  /** What is stored: an entry whose target this batch deletes is stored erased (""). */
  content: string;
  expiresAt: Date;
  refId: string | null;
};

/** A text message an entry of this batch acts on, as the reads found it. */
export type TargetRow = {
  message_id: string;
  conversation_id: string;
  from_user_id: string;
  kind: MessageKind;
  created_at: string;
  expires_at: string;
  deleted_at: string | null;
  /** Row version: every entry rewrites its target's row, so a new xmin means someone acted. */
  xmin: string;
  /** When deleted: its first delete entry, answered to a repeated delete. */
  delete_entry: MessageRow | null;
};

/** What this batch's entries do to one target, folded in request order. */
export type TargetPlan = {
  row: TargetRow;
  content: string | null;
  editedAt: Date | null;
  /** Set by a delete: later entries of the batch see the message as deleted. */
  deletedAt: Date | null;
  deletedBy: number | null;
  /** Reactions to set, by user; null removes. */
  patch: Record<string, string | null>;
  entries: BatchRow[];
};

export type Conversations = Map<string, ConversationFacts>;

export type BatchPlan = {
  rows: BatchRow[];
  plans: Map<string, TargetPlan>;
  /** A delete repeated within the batch answers what the batch's first delete got. */
  repeatOf: Map<number, number>;
};

/**
 * Where each request goes: a direct conversation by its key (created on first use), a
 * given one, or, for an entry, its target's if the rules allow it (judged in request
 * order, so an entry sees what earlier ones of the batch did to the same message).
 * Refusals are written into `outcomes`; refused text messages stay in `rows` (not
 * accepted), so the write still answers a stored retry of them.
 */
export function planBatch(
  reqs: AppendRequest[],
  fresh: number[],
  given: Conversations,
  targets: Map<string, TargetRow>,
  outcomes: BatchOutcome<AppendResult>[],
): BatchPlan {
  const rows: BatchRow[] = [];
  const plans = new Map<string, TargetPlan>();
  const repeatOf = new Map<number, number>();
  for (const index of fresh) {
    const req = reqs[index]!;
    if (req.kind !== "text") {
      const row = targets.get(req.refId);
      const conversation = row && given.get(row.conversation_id);
      const plan = row && (plans.get(row.message_id) ?? newPlan(row));
      const verdict = judgeEntry(
        { kind: req.kind, from: req.from, at: req.createdAt, windowMs: req.windowMs },
        row && {
          kind: row.kind,
          from: row.from_user_id,
          createdAt: new Date(row.created_at),
          expiresAt: new Date(row.expires_at),
          deleted: row.deleted_at !== null || plan!.deletedBy !== null,
          actorIsMember: conversation?.members.includes(req.from) ?? false,
          actorDeparted: conversation?.departed?.includes(req.from) ?? false,
        },
      );
      if ("repeat" in verdict) {
        if (plan!.deletedBy !== null) repeatOf.set(index, plan!.deletedBy);
        else if (row!.delete_entry) outcomes[index] = { ok: true, value: { duplicate: true, message: toMessage(row!.delete_entry) } };
        else outcomes[index] = { ok: false, error: new AppError("FORBIDDEN", "the message was already deleted") };
      } else if (!verdict.ok) outcomes[index] = { ok: false, error: verdict.error };
      else {
        const route = routeToConversation(req.from, conversation); // ok: the actor is a member
        const r: BatchRow = {
          index,
          req,
          accept: true,
          conversationId: row!.conversation_id,
          directKey: null,
          to: route.ok ? route.to : null,
          content: req.content,
          expiresAt: new Date(row!.expires_at),
          refId: row!.message_id,
        };
        rows.push(r);
        plans.set(row!.message_id, plan!);
        applyToPlan(plan!, r);
      }
      continue;
    }
    const text = { content: req.content, expiresAt: req.expiresAt, refId: null };
    if ("to" in req.target) {
      rows.push({ index, req, accept: true, conversationId: null, directKey: directKey(req.from, req.target.to), to: req.target.to, ...text });
      continue;
    }
    const route = routeToConversation(req.from, given.get(req.target.conversationId));
    if (!route.ok) outcomes[index] = route;
    const to = route.ok ? route.to : null;
    rows.push({ index, req, accept: route.ok, conversationId: req.target.conversationId, directKey: null, to, ...text });
  }
  return { rows, plans, repeatOf };
}

function newPlan(row: TargetRow): TargetPlan {
  return { row, content: null, editedAt: null, deletedAt: null, deletedBy: null, patch: {}, entries: [] };
}

function applyToPlan(plan: TargetPlan, r: BatchRow): void {
  const req = r.req as EntryAppend;
  plan.entries.push(r);
  if (req.kind === "edit") {
    plan.content = req.content;
    plan.editedAt = req.createdAt;
  } else if (req.kind === "reaction") {
    plan.patch[req.from] = req.content === "" ? null : req.content;
  } else {
    plan.deletedAt = req.createdAt;
    plan.deletedBy = r.index;
    // The write erases the entries already stored; this batch's own are stored erased.
    for (const e of plan.entries) if (e !== r) e.content = "";
  }
}
