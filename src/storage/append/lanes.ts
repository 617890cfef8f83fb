import type { AppendRequest } from "../../messaging/ports";
import { directKey } from "../../messaging/routing";

/**
 * Write lanes: appends run in up to APPEND_LANES batches at once (storage/GroupCommit.ts),
 * and batches in flight at once never share a conversation key, so one conversation's sends
 * commit in the order they arrived on this node while other conversations' batches run
 * beside them. A second batch starts only when many requests wait or the running one is
 * slow (GroupCommit's overflowAt and stallMs): on a machine where each commit's WAL flush
 * is the scarce part, light load then costs one commit per round, not one per lane
 * (docs/benchmarks.md, "Lanes that open under load").
 *
 * What the key is, as far as it is known before the write: a direct conversation by its
 * sorted pair (so a first message, whose conversation does not exist yet, has its key
 * too), a given conversation by its id, and an edit, delete or reaction, whose
 * conversation is only known after its read, by the message it acts on (so entries of one
 * message keep their order; an entry can only follow its message's commit anyway).
 *
 * So a direct conversation addressed by `to` and by its id has two keys, and an entry
 * another key than its conversation's messages: those, in flight at once, have no order
 * between them (docs/protocol.md, "Ordering and gaps"). Mapping ids to pairs would need a
 * lookup before every send, or a cache that is cold after a restart.
 */
export const conversationKey = (req: AppendRequest): string =>
  req.kind !== "text"
    ? `entry ${req.refId}`
    : "to" in req.target
      ? `direct ${directKey(req.from, req.target.to)}`
      : `id ${req.target.conversationId}`;
