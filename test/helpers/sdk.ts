import { TicksClient, type TicksClientEvents, type TicksClientOptions } from "../../src/client/TicksClient";
import { waitFor } from "./device";

/** SDK clients for a test, with quick reconnects; closeAll() after each test. */
export class SdkClients {
  private readonly clients: TicksClient[] = [];

  create(url: string, options: Omit<TicksClientOptions, "url">): TicksClient {
    const client = new TicksClient({
      url,
      reconnectDelayMs: 100,
      reconnectDelayMaxMs: 500,
      ackTimeoutMs: 5000,
      outbox: { retryBaseMs: 100, retryMaxMs: 1000 },
      ...options,
    });
    this.clients.push(client);
    return client;
  }

  /** Connected and synced. */
  async connected(url: string, options: Omit<TicksClientOptions, "url">): Promise<TicksClient> {
    const client = this.create(url, options);
    const synced = client.whenSynced();
    await client.connect();
    await synced;
    return client;
  }

  closeAll(): void {
    this.clients.splice(0).forEach((c) => c.close());
  }
}

/** Everything one client emitted of one event, in order. */
export function record<E extends keyof TicksClientEvents>(client: TicksClient, event: E): Parameters<TicksClientEvents[E]>[] {
  const seen: Parameters<TicksClientEvents[E]>[] = [];
  client.on(event, ((...args: Parameters<TicksClientEvents[E]>) => seen.push(args)) as TicksClientEvents[E]);
  return seen;
}

/** Resolves with the first `event` whose arguments satisfy `match`. */
export function next<E extends keyof TicksClientEvents>(
  client: TicksClient,
  event: E,
  match: (...args: Parameters<TicksClientEvents[E]>) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<Parameters<TicksClientEvents[E]>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${String(event)}`));
    }, timeoutMs);
    const off = client.on(event, ((...args: Parameters<TicksClientEvents[E]>) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    }) as TicksClientEvents[E]);
  });
}

export { waitFor };
