import { createServer, connect, type Server, type Socket as NetSocket } from "node:net";
import type { Message } from "../../src/protocol";
import { clientSocket, type ClientSocket } from "./socket";
import { sleep, waitFor } from "./wait";

// Where the rolling-restart tests have always found it.
export { sleep } from "./wait";

/**
 * What the failover and rolling-restart tests need from a client: a socket.io-client that
 * reconnects by itself, records every message it is given (raw, duplicates included) and
 * why it was disconnected, and a send that retries with the same clientMsgId until the
 * server acknowledges it, as a real app does.
 */
export type ReconnectingClient = {
  userId: string;
  socket: ClientSocket;
  /** Every `message:new` and backlog message, in arrival order, duplicates included. */
  raw: Message[];
  /** Reasons given to `disconnect`, in order (client-initiated ones included). */
  disconnects: string[];
  /** When each of those happened (Date.now()). */
  disconnectedAt: number[];
  /** How many times `connect` fired (1 + reconnections). */
  connects: number;
  syncs: number;
};

export function reconnectingClient(url: string, userId: string, auth: Record<string, string>): ReconnectingClient {
  const socket = clientSocket(url, auth, { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
  const client: ReconnectingClient = { userId, socket, raw: [], disconnects: [], disconnectedAt: [], connects: 0, syncs: 0 };
  socket.on("connect", () => client.connects++);
  socket.on("disconnect", (reason) => {
    client.disconnects.push(reason);
    client.disconnectedAt.push(Date.now());
  });
  socket.on("message:new", (m, ack) => {
    client.raw.push(m);
    ack();
  });
  socket.on("message:backlog", (page, ack) => {
    client.raw.push(...page.messages);
    ack();
  });
  socket.on("sync:complete", () => client.syncs++);
  return client;
}

/** Connects and waits for the first `sync:complete`. */
export async function connectAndSync(client: ReconnectingClient, timeoutMs = 15_000): Promise<void> {
  client.socket.connect();
  await waitFor(() => client.syncs > 0, `${client.userId} to connect and sync`, timeoutMs);
}

/** Distinct messages received, by id. */
export const distinct = (client: ReconnectingClient): Map<string, Message> => new Map(client.raw.map((m) => [m.id, m]));

export type SendStats = {
  /** Distinct clientMsgIds the senders meant to send. */
  intended: number;
  /** Emits, first tries and retries. */
  attempts: number;
  /** Sends acknowledged `ok` (one per clientMsgId). */
  acknowledged: number;
  /** Acknowledgements that said `duplicate: true` (a retry of something already stored). */
  duplicateAcks: number;
  unavailable: number;
  /** RATE_LIMITED answers (the server's per-user limit): retried after a pause. */
  rateLimited: number;
  /** Attempts that got no answer: ack timeout, or the socket disconnected first. */
  noAnswer: number;
  /** Every ok acknowledgement, including duplicates: clientMsgId → message ids answered. */
  answers: Map<string, Set<string>>;
};

export const newStats = (): SendStats => ({
  intended: 0,
  attempts: 0,
  acknowledged: 0,
  duplicateAcks: 0,
  unavailable: 0,
  rateLimited: 0,
  noAnswer: 0,
  answers: new Map(),
});


/**
 * Sends until acknowledged, always with the same clientMsgId: UNAVAILABLE (a node shutting
 * down), RATE_LIMITED (after a pause) and no answer (timeout, disconnect) are retried; any
 * other error fails the test.
 */
export async function sendReliably(
  client: ReconnectingClient,
  payload: { clientMsgId: string; to: string; content: string },
  stats: SendStats,
  options: { ackTimeoutMs?: number; giveUpAfterMs?: number } = {},
): Promise<Message> {
  const ackTimeoutMs = options.ackTimeoutMs ?? 5000;
  const giveUpAt = Date.now() + (options.giveUpAfterMs ?? 60_000);
  stats.intended++;
  for (;;) {
    if (Date.now() > giveUpAt) throw new Error(`${payload.clientMsgId} never acknowledged`);
    await waitFor(() => client.socket.connected, `a connection for ${client.userId} to send on`, Math.max(0, giveUpAt - Date.now()), 20);
    stats.attempts++;
    let reply;
    try {
      reply = await client.socket.timeout(ackTimeoutMs).emitWithAck("message:send", payload);
    } catch {
      stats.noAnswer++;
      continue;
    }
    if (reply.ok) {
      const ids = stats.answers.get(payload.clientMsgId) ?? new Set<string>();
      ids.add(reply.message.id);
      stats.answers.set(payload.clientMsgId, ids);
      if (reply.duplicate) stats.duplicateAcks++;
      stats.acknowledged++;
      return reply.message;
    }
    if (reply.error.code === "RATE_LIMITED") {
      stats.rateLimited++;
      await sleep(250);
      continue;
    }
    if (reply.error.code !== "UNAVAILABLE") throw new Error(`${payload.clientMsgId}: ${reply.error.code} ${reply.error.message}`);
    stats.unavailable++;
    await sleep(50);
  }
}

/**
 * A TCP load balancer in front of several nodes: each new connection goes to the first node
 * that accepts it. When a node stops listening (shutdown), reconnecting clients land on the
 * next one, with the same URL, as behind any real load balancer.
 */
export type FailoverProxy = { port: number; url: string; landed: number[]; close(): Promise<void> };

export function failoverProxy(backendPorts: number[]): Promise<FailoverProxy> {
  const landed = backendPorts.map(() => 0);
  const open = new Set<NetSocket>();
  const server: Server = createServer((downstream) => {
    open.add(downstream);
    let current: NetSocket | null = null;
    downstream.on("close", () => {
      open.delete(downstream);
      current?.destroy();
    });
    downstream.on("error", () => {});
    const attempt = (i: number) => {
      if (i >= backendPorts.length || downstream.destroyed) return downstream.destroy();
      let up = false;
      const upstream = (current = connect(backendPorts[i]!, "127.0.0.1"));
      open.add(upstream);
      upstream.on("close", () => {
        open.delete(upstream);
        if (up) downstream.destroy();
      });
      upstream.once("connect", () => {
        up = true;
        landed[i]!++;
        downstream.pipe(upstream);
        upstream.pipe(downstream);
      });
      upstream.on("error", () => {
        if (!up) attempt(i + 1);
      });
    };
    attempt(0);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        landed,
        close: () =>
          new Promise<void>((r) => {
            for (const s of open) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
