import type { AppendRequest } from "../../messaging/ports";
import { directKey } from "../../messaging/routing";

/**
 * Write lanes: appends run in several group commits at once (APPEND_LANES), each with one
 * batch in flight and its own share of the conversations, chosen by a hash of the
 * conversation's key. One conversation's sends always go through the same lane, so they
 * commit in the order they arrived on this node, while the other lanes' batches run
 * beside it: a slow or failing batch holds only its own lane.
 *
 * What the key is, as far as it is known before the write: a direct conversation by its
 * sorted pair (so a first message, whose conversation does not exist yet, has its lane
 * too), a given conversation by its id, and an edit, delete or reaction, whose
 * conversation is only known after its read, by the message it acts on (so entries of one
 * message keep their order; an entry can only follow its message's commit anyway).
 *
 * So a direct conversation addressed by `to` and by its id takes two lanes, and an entry
 * another lane than its conversation's messages: those, in flight at once, have no order
 * between them (docs/protocol.md, "Ordering and gaps"). Mapping ids to pairs would need a
 * lookup before every send, or a cache that is cold after a restart.
 */
export const conversationKey = (req: AppendRequest): string =>
  req.kind !== "text"
    ? `entry ${req.refId}`
    : "to" in req.target
      ? `direct ${directKey(req.from, req.target.to)}`
      : `id ${req.target.conversationId}`;

/**
 * The lane of `key` among `lanes`: FNV-1a (32 bits) of its UTF-16 units, then murmur3's
 * finaliser, modulo. Without the finaliser the low bits of FNV-1a depend only on the low
 * bits of the characters, and a modulo by a small power of two put most keys in one lane.
 */
export function laneOf(key: string, lanes: number): number {
  if (lanes <= 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) % lanes;
}
