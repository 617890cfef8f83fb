import type { Logger } from "../log";
import type { MessagingService } from "../messaging/MessagingService";
import { SYNCING_ROOM } from "./rooms";
import { logContext, type TicksSocket } from "./types";

export type SyncOptions = { pageSize: number; ackTimeoutMs: number; retryDelayMs?: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Drains the user's undelivered messages to one freshly connected device, a page at a time:
 * the next page goes out only after the device acknowledged the previous one (so a slow
 * device cannot make the server buffer), and that acknowledgement marks the page delivered.
 * Then `sync:complete`.
 *
 * While syncing, the socket sits in SYNCING_ROOM and live messages skip it; they stay
 * `sent` and come in a later page. After the first empty page the socket leaves the room.
 * A live offer that skipped it since that page was read (`socket.data.missedLive`, set by
 * SocketNotifier) may be of a message committed after the read: then it looks once more,
 * now live. Without one, every message committed since then is offered to it live (each
 * offer follows its commit), and the connect costs one read, not two. Reads of sockets
 * connecting together share one statement (SqlMessageStore.backlog).
 */
export async function syncBacklog(
  socket: TicksSocket,
  messaging: Pick<MessagingService, "backlog" | "confirmDelivered">,
  options: SyncOptions,
  log: Logger,
  onPage: () => void = () => {},
): Promise<void> {
  const userId = socket.data.userId;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  let delivered = 0;
  let live = false;
  while (socket.connected) {
    let page;
    // Only offers skipped after this read starts can be of messages the read does not see.
    socket.data.missedLive = false;
    try {
      // One extra row tells whether another page follows.
      page = await messaging.backlog(userId, options.pageSize + 1);
    } catch (err) {
      log.warn({ err, ...logContext(socket) }, "backlog read failed; retrying");
      await sleep(retryDelayMs);
      continue;
    }
    if (page.length === 0) {
      if (live) break;
      live = true;
      socket.leave(SYNCING_ROOM);
      if (!socket.data.missedLive) break;
      continue;
    }
    const messages = page.slice(0, options.pageSize);
    try {
      await socket.timeout(options.ackTimeoutMs).emitWithAck("message:backlog", {
        messages,
        remaining: page.length > options.pageSize,
      });
    } catch {
      // No acknowledgement in time: the page is still undelivered and is sent again.
      continue;
    }
    const ids = messages.map((m) => m.id);
    try {
      await messaging.confirmDelivered(userId, ids);
      delivered += ids.length;
      onPage();
    } catch (err) {
      log.warn({ err, ...logContext(socket) }, "backlog receipt not stored; the page will be sent again");
      await sleep(retryDelayMs);
    }
  }
  socket.data.missedLive = false;
  if (socket.connected) socket.emit("sync:complete", { delivered });
}
