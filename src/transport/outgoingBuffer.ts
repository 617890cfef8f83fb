import type { Logger } from "../log";
import { logContext, type TicksSocket } from "./types";

/** What is read of engine.io's socket (not in its public types). */
type EnginePacket = { data?: string | Buffer | ArrayBuffer };
type EngineSocket = {
  on(event: "packetCreate", listener: (this: EngineSocket, packet: EnginePacket) => void): void;
  on(event: "flush", listener: (this: EngineSocket, packets: EnginePacket[]) => void): void;
  transport?: { name: string; socket?: { bufferedAmount?: number; terminate?: () => void } };
};

/** UTF-16 units of a string (cheap; under the UTF-8 size by at most ×3), bytes of binary. */
const sizeOf = (packet: EnginePacket): number => {
  const data = packet.data;
  if (data === undefined) return 0;
  return typeof data === "string" ? data.length : data.byteLength;
};

/**
 * Bounds what the server holds for a device that does not read (a bad network, a hostile
 * client): once more than `maxBytes` are queued for it, the socket is disconnected, with a
 * log line and `onExceeded`. Its messages stay `sent` in the database and come from the
 * backlog when it returns, one page at a time.
 *
 * Queued = the engine's write buffer (packets waiting while the transport is busy: with
 * WebSocket, while the previous frames wait for the kernel to take them) + what `ws` holds
 * (`bufferedAmount`). The check runs as each packet is created for this socket (O(1): a
 * counter, moved by `packetCreate` and `flush`) and counts what is queued ahead of the new
 * packet, so one packet larger than the cap (a big backlog page to a device that reads)
 * never trips it: memory stays under `maxBytes` plus one packet. A periodic scan would let a
 * burst grow the buffer without limit between scans. `maxBytes` 0 turns the limit off.
 *
 * With WebSocket it takes backpressure too: `ws` holding bytes the kernel would not take.
 * A burst created in one tick (a redelivery page, many sends at once) piles up in the engine's
 * buffer while the first frame is written, even for a device that reads at once; what tells
 * a device that does not read is that the kernel's buffers are full. (Long-polling has no
 * such signal: its buffer waits for the next poll anyway, so the cap alone decides.)
 *
 * One per server: a socket costs a counter in a WeakMap, not closures of its own.
 */
export class OutgoingBufferCap {
  /** Per connection: its socket and bytes queued in the engine; the listeners are shared. */
  private readonly queues = new WeakMap<EngineSocket, { socket: TicksSocket; engineQueued: number; exceeded: boolean }>();
  private readonly onFlush: (this: EngineSocket, packets: EnginePacket[]) => void;
  private readonly onPacketCreate: (this: EngineSocket, packet: EnginePacket) => void;

  constructor(
    private readonly maxBytes: number,
    log: Logger,
    onExceeded: () => void,
  ) {
    const queues = this.queues;
    // One pair of listeners for every connection (EventEmitter passes the connection as `this`).
    this.onFlush = function (this: EngineSocket, packets: EnginePacket[]) {
      const q = queues.get(this);
      if (q) for (const p of packets) q.engineQueued -= sizeOf(p);
    };
    this.onPacketCreate = function (this: EngineSocket, packet: EnginePacket) {
      const q = queues.get(this);
      if (!q || q.exceeded) return;
      const ws = this.transport?.name === "websocket" ? this.transport.socket : undefined;
      const queued = q.engineQueued + (ws?.bufferedAmount ?? 0);
      q.engineQueued += sizeOf(packet);
      if (queued <= maxBytes || (ws && !ws.bufferedAmount)) return;
      q.exceeded = true;
      const { socket } = q;
      log.warn(
        { ...logContext(socket), socketId: socket.id, queuedBytes: queued, maxBytes },
        "slow consumer: outgoing data over MAX_SOCKET_BUFFER_BYTES, disconnecting the socket",
      );
      onExceeded();
      // After the packet being created is queued (not inside engine.io's send).
      queueMicrotask(() => {
        socket.disconnect(true);
        // A graceful close would wait for the stuck data to drain: drop the connection, so
        // what it holds is freed now.
        ws?.terminate?.();
      });
    };
  }

  /** Caps this socket's outgoing data (nothing when `maxBytes` is 0). */
  watch(socket: TicksSocket): void {
    if (this.maxBytes <= 0) return;
    const conn = socket.conn as unknown as EngineSocket;
    this.queues.set(conn, { socket, engineQueued: 0, exceeded: false });
    conn.on("flush", this.onFlush);
    conn.on("packetCreate", this.onPacketCreate);
  }
}
