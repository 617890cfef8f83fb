import type { AppendRequest, AppendResult } from "../../src/messaging/ports";
import { messageIdAt } from "../../src/messaging/messageIds";
import type { BatchOutcome } from "../../src/storage/GroupCommit";
import { uniqueId } from "./ids";

/** A direct text message as the messaging core hands it to the store, created now, kept a day. */
export const textRequest = (from: string, to: string, clientMsgId = uniqueId("c"), content = "hi"): AppendRequest => {
  const createdAt = new Date();
  return {
    kind: "text",
    id: messageIdAt(createdAt),
    from,
    clientMsgId,
    target: { to },
    content,
    createdAt,
    expiresAt: new Date(createdAt.getTime() + 86_400_000),
    media: null,
  };
};

/** The result of an outcome that must be ok. */
export const okValue = (o: BatchOutcome<AppendResult> | undefined): AppendResult => {
  if (!o?.ok) throw new Error(`not ok: ${String(o && !o.ok ? o.error : o)}`);
  return o.value;
};
