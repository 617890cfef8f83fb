import type { Logger } from "../log";
import type { NodeDeath } from "../messaging/Redeliverer";
import type { RedisClient } from "./redis";
import { nodeDeathChannel } from "./RedisPresenceTracker";

/**
 * Hears the announcements of dead nodes that the presence reaper publishes (see REAP in
 * RedisPresenceTracker), on a connection of its own: a subscribed connection can do nothing
 * else, and the adapter's has its own protocol. ioredis subscribes again after a reconnect.
 */
export class RedisNodeDeaths {
  private readonly listeners: ((death: NodeDeath) => void)[] = [];

  private constructor(
    private readonly sub: RedisClient,
    private readonly selfId: string,
    log: Logger,
  ) {
    sub.on("message", (_channel: string, text: string) => {
      const space = text.lastIndexOf(" ");
      const nodeId = text.slice(0, space);
      const aliveUntil = new Date(Number(text.slice(space + 1)));
      // This node announced as dead: it stalled past its deadline, and is back.
      if (space < 0 || nodeId === this.selfId || Number.isNaN(aliveUntil.getTime())) return;
      log.info({ deadNode: nodeId, aliveUntil }, "a node died");
      for (const listener of this.listeners) listener({ nodeId, aliveUntil });
    });
  }

  /** `sub` is a connected client of its own (with a cluster, ioredis picks the node it listens on). */
  static async open(sub: RedisClient, prefix: string, selfId: string, log: Logger): Promise<RedisNodeDeaths> {
    try {
      await sub.subscribe(nodeDeathChannel(prefix));
    } catch (err) {
      sub.disconnect();
      throw err;
    }
    return new RedisNodeDeaths(sub, selfId, log);
  }

  subscribe(listener: (death: NodeDeath) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    await this.sub.quit().catch(() => {});
    this.sub.disconnect();
  }
}
