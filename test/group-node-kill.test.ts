import { expect } from "chai";
import type { Message, SendRequest } from "../src/protocol";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { expectOk } from "./helpers/replies";
import { spawnNode } from "./helpers/processes";
import { FLOOD_TIMEOUTS, useTwoNodeCluster } from "./helpers/twoNodeCluster";
import { sleep } from "./helpers/wait";

/**
 * A node killed (SIGKILL) while a removal is in flight on it, with sends from both nodes
 * around it. Two server processes (the compiled code, `npm run build` first) share a
 * database and a private Redis. Whether or not the removal committed before the kill, the
 * client's retry on the other node settles it exactly once; then nothing stored is lost
 * (every delivery row ends delivered) and nothing leaks (the removed user never gets a
 * seq after the removal, and has no delivery row for one).
 */
describe("a node killed during a group removal (two processes, Redis)", function () {
  this.timeout(120_000);
  const cluster = useTwoNodeCluster(FLOOD_TIMEOUTS);
  const device = (node: number, userId: string) => {
    const d = new Device(cluster.urls[node]!, { userId });
    cluster.clients.push(d);
    return d;
  };
  /** Sends without waiting; resolves the stored message, or null if the node died first. */
  const emitSend = (who: Device, req: SendRequest) =>
    new Promise<Message | null>((resolve) => {
      who.socket.once("disconnect", () => resolve(null));
      who.socket.emit("message:send", req, (reply) => resolve(reply.ok ? reply.message : null));
    });

  const committed = async (from: string, clientMsgId: string): Promise<boolean> =>
    (await cluster.pg.query("SELECT 1 FROM messages WHERE from_user_id = $1 AND client_msg_id = $2", [from, clientMsgId])).rows.length > 0;

  // When the node dies: as the removal arrives, a few ms later, and right after it committed
  // (before its ack and its live fan-out could leave the node).
  for (const when of ["as it is sent", "5 ms after it is sent", "right after it committed"] as const) {
    it(`loses nothing and leaks nothing (node killed ${when})`, async () => {
      const [a, b, c, d] = ["alice", "bob", "carol", "dave"].map(uniqueId) as [string, string, string, string];
      const alice = await device(0, a).connectSynced();
      const dave = await device(0, d).connectSynced();
      const bob = await device(1, b).connectSynced();
      const carol = await device(1, c).connectSynced();
      const created = await alice.request("group:create", { title: "doomed node", members: [b, c, d] });
      expectOk(created);
      const group = created.conversationId;
      const say = (i: number, who: string): SendRequest => ({ clientMsgId: `${who}-${i}`, conversationId: group, content: `${who} ${i}` });

      // Sends from both nodes, the removal on node 0, and node 0 killed under them.
      const daveSends = Array.from({ length: 20 }, (_, i) => say(i, d));
      const daveAcks = daveSends.map((req) => emitSend(dave, req));
      const carolAcks = Array.from({ length: 20 }, (_, i) => emitSend(carol, say(i, c)));
      const removalId = uniqueId("remove");
      alice.socket.emit("group:remove", { clientMsgId: removalId, conversationId: group, userId: b }, () => {});
      if (when === "5 ms after it is sent") await sleep(5);
      if (when === "right after it committed") await waitFor(() => committed(a, removalId), "the removal committed", 10_000, 1);
      await cluster.nodes[0]!.kill("SIGKILL");
      const committedBeforeRetry = (await committed(a, removalId)) ? 1 : 0;
      console.log(`      removal committed before the kill: ${committedBeforeRetry === 1 ? "yes" : "no"}`);

      // The clients retry on the surviving node with the same clientMsgIds.
      const alice2 = await device(1, a).connectSynced();
      const retried = await alice2.request("group:remove", { clientMsgId: removalId, conversationId: group, userId: b });
      expectOk(retried);
      expect(retried.duplicate).to.equal(committedBeforeRetry === 1);
      const R = retried.message.seq;
      const dave2 = await device(1, d).connectSynced();
      const daveStored = await Promise.all(
        daveSends.map(async (req, i) => (await daveAcks[i]!) ?? (await dave2.send({ conversationId: group }, req.content, req.clientMsgId))),
      );
      const carolStored = (await Promise.all(carolAcks)) as Message[];
      expect(carolStored.every((m) => m !== null)).to.equal(true);
      const later = await Promise.all(Array.from({ length: 5 }, (_, i) => carol.send({ conversationId: group }, `later ${i}`)));

      // Exactly one removal entry; seqs gap-free; every message stored once.
      const { rows: entries } = await cluster.pg.query(
        `SELECT seq, "group"->>'action' AS action FROM messages WHERE conversation_id = $1 AND kind = 'group'`,
        [group],
      );
      expect(entries).to.deep.equal([{ seq: String(R), action: "remove" }]);
      const { rows: all } = await cluster.pg.query("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", [group]);
      expect(all.map((r) => Number(r.seq))).to.deep.equal(Array.from({ length: 46 }, (_, i) => i + 1));
      expect(new Set([...daveStored, ...carolStored, ...later].map((m) => m.id)).size).to.equal(45);

      // Leaks nothing: bob's delivery rows stop at R, his device never sees a later seq.
      const { rows: bobRows } = await cluster.pg.query(
        `SELECT max(m.seq)::int AS last FROM message_delivery d JOIN messages m ON m.message_id = d.message_id
         WHERE d.recipient_id = $1 AND m.conversation_id = $2`,
        [b, group],
      );
      expect(bobRows[0].last).to.equal(R);
      // Loses nothing: every delivery row of the group ends delivered (live, backlog or redelivery).
      await waitFor(
        async () =>
          (
            await cluster.pg.query(
              `SELECT count(*)::int AS n FROM message_delivery d JOIN messages m ON m.message_id = d.message_id
               WHERE m.conversation_id = $1 AND d.status = 'sent'`,
              [group],
            )
          ).rows[0].n === 0,
        "every delivery row delivered",
        60_000,
        200,
      );
      const bobExpected = (await cluster.pg.query(
        `SELECT m.message_id FROM message_delivery d JOIN messages m ON m.message_id = d.message_id
         WHERE d.recipient_id = $1 AND m.conversation_id = $2`,
        [b, group],
      )).rows.map((r) => r.message_id).sort();
      await quiet(500);
      expect(bob.received.filter((m) => m.conversationId === group).map((m) => m.id).sort()).to.deep.equal(bobExpected);
      expect(bob.received.filter((m) => m.seq > R)).to.deep.equal([]);
      expect(bob.received.filter((m) => m.seq < R && m.from !== b).length).to.equal(bobExpected.length - 1);

      // The killed node comes back for the next round.
      cluster.clients.splice(0).forEach((x) => x.close());
      await restartNode0();
    });
  }

  async function restartNode0(): Promise<void> {
    const env = {
      DATABASE_URL: cluster.db.url,
      REDIS_URL: cluster.redis.url,
      AUTH_MODE: "dev",
      RATE_LIMIT_EVENTS_PER_SEC: "0",
      ...FLOOD_TIMEOUTS,
    };
    cluster.nodes[0] = await spawnNode(env);
  }
});
