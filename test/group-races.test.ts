import { expect } from "chai";
import type { Message } from "../src/protocol";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { expectOk } from "./helpers/replies";
import { useTwoNodesOnPostgres } from "./helpers/twoNodesOnPostgres";

/**
 * Membership changes racing other writes, on two nodes joined by Redis, each side of a race
 * on its own node. What decides is seq: the conversation's row lock orders a removal and the
 * sends around it, and each is judged and addressed by the members at its own seq.
 */
describe("group membership races (two nodes through Redis)", function () {
  this.timeout(120_000);
  const t = useTwoNodesOnPostgres();
  const device = t.device;


  for (let round = 1; round <= 3; round++) {
    it(`sends racing a removal are decided by seq: before it delivered to the removed, after it never (round ${round})`, async () => {
      const [a, b, c, d] = ["alice", "bob", "carol", "dave"].map(uniqueId) as [string, string, string, string];
      const alice = await device(0, a).connectSynced();
      const bob = await device(1, b).connectSynced();
      const carol = await device(1, c).connectSynced();
      const dave = await device(0, d).connectSynced();
      const created = await alice.request("group:create", { title: "race", members: [b, c, d] });
      expectOk(created);
      const group = created.conversationId;
      const send = (who: Device, i: number) =>
        who.request("message:send", { clientMsgId: uniqueId("m"), conversationId: group, content: `${who.userId} ${i}` });
      // Sends from both nodes in flight while the removal is decided; bob's own sends too.
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < 30; i++) sends.push(send(carol, i), send(dave, i));
      for (let i = 0; i < 10; i++) sends.push(send(bob, i));
      const removal = alice.request("group:remove", { clientMsgId: uniqueId("rm"), conversationId: group, userId: b });
      for (let i = 30; i < 60; i++) sends.push(send(carol, i), send(dave, i));
      const removed = await removal;
      expectOk(removed);
      const replies = (await Promise.all(sends)) as { ok: boolean; message?: Message; error?: { code: string } }[];
      const R = removed.message.seq;
      const stored = replies.filter((r) => r.ok).map((r) => r.message!);
      // bob's sends after the removal are refused; everyone else's are stored.
      for (const r of replies.filter((x) => !x.ok)) expect(r.error!.code).to.equal("FORBIDDEN");
      expect(stored.filter((m) => m.from !== b)).to.have.length(120);
      for (const m of stored.filter((x) => x.from === b)) expect(m.seq).to.be.lessThan(R);
      const seqs = [...stored.map((m) => m.seq), R].sort((x, y) => x - y);
      expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => i + 1));

      // Delivery rows: bob is a recipient of exactly the others' messages before R, and of R.
      const { rows } = await t.pg.query(
        `SELECT m.seq FROM message_delivery d JOIN messages m ON m.message_id = d.message_id
         WHERE d.recipient_id = $1 AND m.conversation_id = $2 ORDER BY m.seq`,
        [b, group],
      );
      const before = stored.filter((m) => m.seq < R && m.from !== b).map((m) => m.seq);
      expect(rows.map((r) => Number(r.seq))).to.deep.equal([...before, R].sort((x, y) => x - y));
      // His device gets those (live) and nothing after, whatever node it was sent on.
      await waitFor(() => bob.received.filter((m) => m.from !== b).length === before.length + 1, () => `bob has ${bob.received.length}`);
      await quiet(500);
      expect(bob.received.filter((m) => m.seq > R)).to.deep.equal([]);
      // Those who stayed get everything from the others.
      await waitFor(() => carol.received.length === stored.length + 1 - stored.filter((m) => m.from === c).length, "carol has all");
    });
  }

  for (let round = 1; round <= 5; round++) {
    it(`two admins removing each other at once leave one consistent group (round ${round})`, async () => {
      const [a, b, c] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
      const alice = await device(0, a).connectSynced();
      const bob = await device(1, b).connectSynced();
      const carol = await device(round, c).connectSynced();
      const created = await alice.request("group:create", { title: "coup", members: [b, c] });
      expectOk(created);
      const group = created.conversationId;
      expectOk(await alice.request("group:role", { clientMsgId: uniqueId("r"), conversationId: group, userId: b, role: "admin" }));

      const [byAlice, byBob] = await Promise.all([
        alice.request("group:remove", { clientMsgId: uniqueId("rm"), conversationId: group, userId: b }),
        bob.request("group:remove", { clientMsgId: uniqueId("rm"), conversationId: group, userId: a }),
      ]);
      const won = [byAlice, byBob].filter((r) => r.ok);
      const lost = [byAlice, byBob].filter((r) => !r.ok);
      expect(won, JSON.stringify([byAlice, byBob])).to.have.length(1);
      expect(lost[0]).to.deep.include({ ok: false });
      expect(!lost[0]!.ok && lost[0]!.error.code).to.equal("FORBIDDEN");
      const [winner, loser] = byAlice.ok ? [a, b] : [b, a];

      const members = await t.pg.query("SELECT user_id, role FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id", [group]);
      expect(members.rows).to.deep.equal(
        [
          { user_id: winner, role: "admin" },
          { user_id: c, role: "member" },
        ].sort((x, y) => (x.user_id < y.user_id ? -1 : 1)),
      );
      const departures = await t.pg.query("SELECT user_id FROM conversation_departures WHERE conversation_id = $1", [group]);
      expect(departures.rows).to.deep.equal([{ user_id: loser }]);
      const entries = await t.pg.query(
        `SELECT "group"->>'action' AS action FROM messages WHERE conversation_id = $1 AND kind = 'group' ORDER BY seq`,
        [group],
      );
      expect(entries.rows.map((r) => r.action)).to.deep.equal(["role", "remove"]);
      // Every device agrees: carol sees one removal, the loser is told, and the winner still acts.
      await waitFor(() => carol.received.filter((m) => m.group?.action === "remove").length === 1, "carol sees the removal");
      const winnerDevice = winner === a ? alice : bob;
      const loserDevice = winner === a ? bob : alice;
      await waitFor(() => loserDevice.received.some((m) => m.group?.action === "remove"), "the loser learns it");
      expectOk(await winnerDevice.request("group:update", { clientMsgId: uniqueId("t"), conversationId: group, title: "won" }));
      const list = await carol.request("conversation:list", {});
      expectOk(list);
      expect(list.conversations.find((x) => x.id === group)).to.deep.include({ admins: [winner], title: "won" });
    });
  }
});
