/**
 * A TicksClient's outbox, wired: it sends over the client's socket once connected, uploads
 * media first, and reports each entry's fate to the status tracker (and a stored message to
 * the conversation it belongs to, as this device's own send).
 */
import type { ClientSocket } from "./request";
import { emitRaw, type OkOf, type RequestOf } from "./request";
import type { Connection } from "./Connection";
import type { ConversationSync } from "./ConversationSync";
import { uploadEntry } from "./mediaUpload";
import { Outbox, type OutboxOptions } from "./Outbox";
import type { OutboxStorage, PendingEntry } from "./OutboxStorage";
import type { StatusTracker } from "./StatusTracker";

export type ClientOutboxDeps = {
  connection: Connection;
  socket: ClientSocket;
  askUpload(req: RequestOf<"media:upload">): Promise<OkOf<"media:upload">>;
  baseUrl: string;
  progress(info: { clientMsgId: string; loaded: number; total: number }): void;
  statuses: StatusTracker;
  sync: ConversationSync;
  error(err: Error): void;
};

export function createClientOutbox(d: ClientOutboxDeps, storage: OutboxStorage, options?: OutboxOptions): Outbox {
  return new Outbox(
    {
      whenConnected: () => d.connection.whenConnected(),
      emit: (event, payload) => emitRaw(d.socket as never, event, payload, d.connection.ackTimeoutMs),
      upload: (entry) =>
        uploadEntry(entry, {
          askUpload: d.askUpload,
          baseUrl: d.baseUrl,
          progress: (clientMsgId, loaded, total) => d.progress({ clientMsgId, loaded, total }),
        }),
    },
    storage,
    {
      done: (entry, message) => {
        d.statuses.sent(message.id, message.conversationId, entry.clientMsgId, message);
        void d.sync.receive(message, "sent").catch(d.error);
      },
      failed: (entry, error) => d.statuses.failed(entry.clientMsgId, error, conversationOf(entry)),
      retrying: () => undefined,
    },
    options,
  );
}

/** The conversation an outbox entry is sent to, when it names one. */
export const conversationOf = (entry: PendingEntry): string | undefined =>
  entry.event === "message:send" ? entry.conversationId : undefined;
