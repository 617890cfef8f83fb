import type { PresenceTracker } from "../messaging/ports";
import type { RedisClient } from "./redis";

/**
 * Presence shared by every node through Redis, with expiring heartbeats so a node that dies
 * (kill -9) cannot leave its users online: each connection entry carries a deadline, ttl·2/3
 * ahead, that its node pushes forward at every heartbeat (`refresh`, every ttl/6: see
 * PresenceService); a connection past its deadline is reaped as gone. A dead node's users
 * are therefore offline within ttl·2/3 plus one heartbeat round (ttl/6), inside the ttl.
 *
 * Keys (`P` is REDIS_PREFIX, default "ticks"; the braces are literal):
 * - `{P:presence}:user:{userId}`  ZSET connectionId → deadline (ms): the user's connections
 * - `{P:presence}:deadlines`      ZSET "{userId} {connectionId}" → deadline: what to reap
 * - `{P:presence}:nodes`          ZSET nodeId → deadline: the nodes themselves
 * - `P:presence:node-died`        pub/sub channel: "{nodeId} {deadline}" once per dead node
 * A space cannot occur in a user id, so it separates the two. The scripts touch keys they
 * compute themselves (a heartbeat renews every user of the node in one call), so every key
 * shares the hash tag `{P:presence}`: on a Redis Cluster they all live in one hash slot, on
 * one master, and the scripts stay atomic there. Presence is therefore not spread across
 * shards; docs/scaling.md says what that costs.
 */

const CONNECT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. ' ' .. ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
if before == 0 then return 1 else return 0 end`;

const DISCONNECT = `
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3] .. ' ' .. ARGV[2])
if removed == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 else return 0 end`;

/** ARGV: now, deadline, prefix, then pairs userId, connectionId. Returns users back online. */
const HEARTBEAT = `
local back = {}
for i = 4, #ARGV, 2 do
  local key = ARGV[3] .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  local before = redis.call('ZCARD', key)
  redis.call('ZADD', key, ARGV[2], ARGV[i + 1])
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i] .. ' ' .. ARGV[i + 1])
  if before == 0 then table.insert(back, ARGV[i]) end
end
return back`;

/**
 * ARGV: now, limit, prefix, channel. Returns the users left with no live connection. An entry
 * still in the deadlines set was never disconnected cleanly, so its user had not been reported
 * offline; an empty set (ZSETs vanish when empty) means they are offline now.
 *
 * Then the nodes past their deadline: each is removed and announced on the channel in the
 * same script, so exactly one reaper claims a dead node and the claim cannot be lost before
 * the announcement. Every node listens (RedisNodeDeaths) and serves its own sockets: the work
 * splits with no coordination, and the announcement comes within one heartbeat round of the
 * deadline, from whichever node reaps first. Pub/sub is at most once: a node cut off from
 * Redis at that moment misses it, and periodic redelivery remains its backstop. (Letting every
 * node watch the nodes set instead would leave nobody knowing when an expired entry has been
 * seen by all and may go.)
 */
const REAP = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local offline = {}
local seen = {}
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  local sep = string.find(entry, ' ', 1, true)
  local user = string.sub(entry, 1, sep - 1)
  local key = ARGV[3] .. user
  redis.call('ZREM', key, string.sub(entry, sep + 1))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if not seen[user] and redis.call('ZCARD', key) == 0 then
    seen[user] = true
    table.insert(offline, user)
  end
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 100)
for i = 1, #dead, 2 do
  redis.call('ZREM', KEYS[2], dead[i])
  redis.call('PUBLISH', ARGV[4], dead[i] .. ' ' .. dead[i + 1])
end
return offline`;

/** The hash tag every presence key starts with: one slot on a Redis Cluster. */
const presenceTag = (prefix: string): string => `{${prefix}:presence}`;

/** The ZSET of live nodes (tests plant a dead one there). */
export const presenceNodesKey = (prefix: string): string => `${presenceTag(prefix)}:nodes`;

/** The ZSET of every connection, "{userId} {nodeId}/{connectionId}" (tests read where users are). */
export const presenceDeadlinesKey = (prefix: string): string => `${presenceTag(prefix)}:deadlines`;

/** The channel dead nodes are announced on (see REAP). */
export const nodeDeathChannel = (prefix: string): string => `${prefix}:presence:node-died`;

export class RedisPresenceTracker implements PresenceTracker {
  private readonly local = new Map<string, string>(); // connectionId → userId, on this node
  private readonly userPrefix: string;
  private readonly deadlines: string;
  private readonly nodes: string;
  private readonly deathChannel: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly nodeId: string,
    private readonly ttlMs: number,
    prefix: string,
  ) {
    this.userPrefix = `${presenceTag(prefix)}:user:`;
    this.deadlines = presenceDeadlinesKey(prefix);
    this.nodes = presenceNodesKey(prefix);
    this.deathChannel = nodeDeathChannel(prefix);
  }

  private deadline(): number {
    // Four heartbeats (every ttl/6) fit before the deadline: a late one or two do not flap presence.
    return Date.now() + Math.round((this.ttlMs * 2) / 3);
  }

  private connectionKey(connectionId: string): string {
    return `${this.nodeId}/${connectionId}`;
  }

  async connected(userId: string, connectionId: string): Promise<boolean> {
    this.local.set(connectionId, userId);
    const result = await this.redis.eval(
      CONNECT,
      3,
      this.userPrefix + userId,
      this.deadlines,
      this.nodes,
      Date.now(),
      this.deadline(),
      this.connectionKey(connectionId),
      userId,
      this.nodeId,
    );
    return result === 1;
  }

  async disconnected(userId: string, connectionId: string): Promise<boolean> {
    this.local.delete(connectionId);
    const result = await this.redis.eval(
      DISCONNECT,
      2,
      this.userPrefix + userId,
      this.deadlines,
      Date.now(),
      this.connectionKey(connectionId),
      userId,
    );
    return result === 1;
  }

  async online(userIds: string[]): Promise<Set<string>> {
    const now = Date.now();
    const pipeline = this.redis.pipeline();
    for (const u of userIds) pipeline.zcount(this.userPrefix + u, `(${now}`, "+inf");
    const results = (await pipeline.exec()) ?? [];
    const online = new Set<string>();
    results.forEach(([err, count], i) => {
      if (err) throw err;
      if (Number(count) > 0) online.add(userIds[i]!);
    });
    return online;
  }

  async refresh(): Promise<string[]> {
    // The node's own entry, even with no connection: its death is what other nodes act on.
    await this.redis.zadd(this.nodes, this.deadline(), this.nodeId);
    const back: string[] = [];
    const entries = [...this.local];
    // Chunked: one script call must not hold Redis for long.
    for (let i = 0; i < entries.length; i += 1000) {
      const args: (string | number)[] = [Date.now(), this.deadline(), this.userPrefix];
      for (const [connectionId, userId] of entries.slice(i, i + 1000)) args.push(userId, this.connectionKey(connectionId));
      back.push(...((await this.redis.eval(HEARTBEAT, 1, this.deadlines, ...args)) as string[]));
    }
    return back;
  }

  async reap(limit = 1000): Promise<string[]> {
    return (await this.redis.eval(REAP, 2, this.deadlines, this.nodes, Date.now(), limit, this.userPrefix, this.deathChannel)) as string[];
  }

  /**
   * At a clean shutdown (after the app settled its offers and closed its sockets): leaves
   * the nodes set, so its departure is not announced as a death.
   */
  async close(): Promise<void> {
    this.local.clear();
    await this.redis.zrem(this.nodes, this.nodeId).catch(() => {});
  }
}
