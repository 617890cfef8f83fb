import { expect } from "chai";
import { Client } from "pg";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId, waitFor } from "./helpers/device";
import { spawnNode, startPrivateRedis, type NodeProcess, type RedisProcess } from "./helpers/processes";
import {
  connectStream,
  distinct,
  failoverProxy,
  newStats,
  sendReliably,
  sleep,
  streamClient,
  type FailoverProxy,
  type StreamClient,
} from "./helpers/stream";

/**
 * SIGTERM on one of two nodes while its clients stream messages: the node stops taking
 * connections, answers what is in flight, then closes its sockets at the transport level;
 * the clients reconnect by themselves (through a load balancer, to the other node) and
 * retry what was not acknowledged with the same clientMsgId. Nothing is lost, nothing is
 * stored twice.
 */
describe("graceful shutdown: SIGTERM on a node mid-stream", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let redis: RedisProcess;
  let pg: Client;
  let nodes: NodeProcess[] = [];
  let proxy: FailoverProxy | undefined;
  const clients: StreamClient[] = [];

  before(async () => {
    db = await createTestDatabase();
    redis = await startPrivateRedis();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      AUTH_MODE: "dev",
      PRESENCE_TTL_MS: "1500",
      REDELIVERY_AFTER_MS: "1000",
      DELIVERY_ACK_TIMEOUT_MS: "1000",
    };
    nodes = await Promise.all([spawnNode(env), spawnNode(env)]);
    proxy = await failoverProxy(nodes.map((n) => n.port));
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") {
      for (const n of nodes) console.log(`--- node ${n.pid} (exit ${n.child.exitCode})\n${n.output.slice(-40).join("\n")}`);
    }
  });
  after(async () => {
    clients.splice(0).forEach((c) => c.socket.disconnect());
    await proxy?.close();
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    await pg?.end();
    await redis?.stop();
    await db?.drop();
  });

  it("drains in-flight sends, closes sockets so clients reconnect elsewhere, loses and duplicates nothing", async () => {
    const [node1, node2] = nodes as [NodeProcess, NodeProcess];
    const client = (url: string, prefix: string) => {
      const userId = uniqueId(prefix);
      const c = streamClient(url, userId, { userId });
      clients.push(c);
      return c;
    };
    // Recipients on node 2, directly; senders through the load balancer, which sends them to node 1.
    const recipients = Array.from({ length: 4 }, () => client(node2.url, "recipient"));
    const senders = Array.from({ length: 8 }, () => client(proxy!.url, "sender"));
    await Promise.all([...recipients, ...senders].map((c) => connectStream(c)));
    expect(proxy!.landed, "every sender starts on node 1").to.deep.equal([senders.length, 0]);

    const stats = newStats();
    const intended: { from: string; clientMsgId: string; to: string }[] = [];
    const acked: Message[] = [];
    let streaming = true;
    const loops = senders.map(async (s, i) => {
      for (let n = 0; streaming; n++) {
        const to = recipients[(i + n) % recipients.length]!.userId;
        const clientMsgId = `${s.userId}:${n}`;
        intended.push({ from: s.userId, clientMsgId, to });
        acked.push(await sendReliably(s, { clientMsgId, to, content: `message ${n} from ${s.userId}` }, stats));
        await sleep(5);
      }
    });

    await waitFor(() => stats.acknowledged >= 200, "a steady stream through node 1", 20_000);
    const beforeSignal = stats.acknowledged;
    const signalledAt = Date.now();
    const exitCode = await node1.kill("SIGTERM");
    const exitMs = Date.now() - signalledAt;
    await waitFor(() => senders.every((s) => s.connects >= 2 && s.socket.connected), "senders reconnected", 10_000);
    const afterExit = stats.acknowledged;
    await waitFor(() => stats.acknowledged >= afterExit + 200, "the stream going on through node 2", 20_000);
    streaming = false;
    await Promise.all(loops);
    // Before anything of ours closes a socket: why the senders were disconnected.
    const reasons = senders.flatMap((s) => s.disconnects);

    console.log(
      `    node 1 exited ${exitCode} ${exitMs} ms after SIGTERM; sends: intended ${stats.intended}, attempts ${stats.attempts}, ` +
        `acknowledged ${stats.acknowledged} (${beforeSignal} before SIGTERM, ${afterExit} when node 1 had exited), ` +
        `duplicate acks ${stats.duplicateAcks}, UNAVAILABLE ${stats.unavailable}, no answer ${stats.noAnswer}; ` +
        `load balancer: ${proxy!.landed.join(" on node 1, ")} on node 2; sender disconnect reasons ${JSON.stringify(count(reasons))}`,
    );

    // The node drained and exited cleanly, in a few seconds.
    expect(exitCode, "node 1 exit code").to.equal(0);
    expect(exitMs, "time from SIGTERM to exit").to.be.lessThan(5000);
    expect(node1.output.join("\n")).to.include('"shutting down"').and.not.include("unclean shutdown");
    // Closed at the transport level: socket.io-client reconnects by itself, and did.
    expect(reasons).to.have.length(senders.length);
    expect(new Set(reasons)).to.deep.equal(new Set(["transport close"]));
    expect(proxy!.landed[1], "reconnections landed on node 2").to.equal(senders.length);
    expect(node2.child.exitCode, "node 2 still runs").to.equal(null);

    // Stored exactly once: every acknowledgement is in the database, one row per clientMsgId.
    const { rows } = await pg.query<{ message_id: string; from_user_id: string; client_msg_id: string; to_user_id: string }>(
      "SELECT message_id, from_user_id, client_msg_id, to_user_id FROM messages",
    );
    const byId = new Map(rows.map((r) => [r.message_id, r]));
    expect(acked.filter((m) => !byId.has(m.id)), "acknowledged but not stored").to.deep.equal([]);
    const keys = rows.map((r) => `${r.from_user_id} ${r.client_msg_id}`);
    expect(keys.length - new Set(keys).size, "rows sharing (from_user_id, client_msg_id)").to.equal(0);
    expect(new Set(keys)).to.deep.equal(new Set(intended.map((x) => `${x.from} ${x.clientMsgId}`)));
    expect(rows).to.have.length(intended.length);
    // A retry that found its message already stored was answered with that same message.
    const answeredTwoWays = [...stats.answers].filter(([, ids]) => ids.size !== 1);
    expect(answeredTwoWays, "clientMsgIds answered with different ids").to.deep.equal([]);
    const storedTo = new Map(rows.map((r) => [`${r.from_user_id} ${r.client_msg_id}`, r.to_user_id]));
    expect(intended.filter((x) => storedTo.get(`${x.from} ${x.clientMsgId}`) !== x.to), "stored for someone else").to.deep.equal([]);

    // Every recipient ends with every message addressed to it: none lost, none foreign.
    const expected = new Map(recipients.map((r) => [r.userId, new Set(rows.filter((x) => x.to_user_id === r.userId).map((x) => x.message_id))]));
    const missing = () => recipients.flatMap((r) => [...expected.get(r.userId)!].filter((id) => !distinct(r).has(id)));
    await waitFor(() => missing().length === 0, "every recipient has every message", 20_000).catch(() => {});
    const lost = missing();
    const received = recipients.reduce((n, r) => n + distinct(r).size, 0);
    const raw = recipients.reduce((n, r) => n + r.raw.length, 0);
    console.log(`    recipients: ${rows.length} stored, ${received} received (de-duplicated), ${raw - received} duplicates before de-dup, ${lost.length} lost`);
    expect(lost, "lost").to.deep.equal([]);
    for (const r of recipients) expect([...distinct(r).keys()].filter((id) => !expected.get(r.userId)!.has(id))).to.deep.equal([]);
    expect(received).to.equal(rows.length);

    // And the database agrees: every receipt arrived, nothing is left 'sent'.
    const undelivered = async () =>
      (await pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE status = 'sent'")).rows[0].n as number;
    const until = Date.now() + 10_000;
    while ((await undelivered()) > 0 && Date.now() < until) await sleep(100);
    expect(await undelivered(), "messages still 'sent'").to.equal(0);
  });
});

const count = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x] = (acc[x] ?? 0) + 1), acc), {});
