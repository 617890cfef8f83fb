import { expect } from "chai";
import { printFigures, settle } from "../helpers/accounting";
import { liveInversions } from "../helpers/arrivalOrder";
import { FailoverRecipient, type SendReply } from "../helpers/failover";
import { newFloodStats, newIntent, spread, type Intent } from "../helpers/flood";
import { uniqueId } from "../helpers/ids";
import { clientSocket, connectSocket, type ClientSocket } from "../helpers/socket";
import type { NodeProcess } from "../helpers/processes";
import { useTwoNodeCluster } from "../helpers/twoNodeCluster";

const USERS = 20;
const PER_USER = 50; // 1 000 distinct messages
const RECIPIENTS = 10;

/**
 * Extra case 5: a retry storm. Every message is sent four times at once with the same
 * clientMsgId: twice on one socket (same node, likely the same group-commit batch), once
 * from a second device on the same node and once from a third device on the other node
 * (a race between two nodes' transactions). Guarantee 2: one stored message per
 * (sender, clientMsgId), and every ok answers that one message.
 */
describe("fault (extra): the same clientMsgId sent four times at once, on both nodes", function () {
  this.timeout(180_000);
  const cluster = useTwoNodeCluster({ REDELIVERY_AFTER_MS: "2000", DELIVERY_ACK_TIMEOUT_MS: "3000" });

  it("stores each message once and answers every copy with the same message", async () => {
    const [A, B] = cluster.nodes as [NodeProcess, NodeProcess];
    const urls = [A.url, B.url];
    const recipients = spread(RECIPIENTS, (i, start) => new FailoverRecipient(urls, uniqueId(`r${i}`), start), 2);
    cluster.clients.push(...recipients);
    await Promise.all(recipients.map((r) => r.startSynced()));

    const connect = (url: string, userId: string, deviceId: string) => {
      const s = clientSocket(url, { userId, deviceId });
      cluster.clients.push({ close: () => s.disconnect() });
      return connectSocket(s);
    };
    const users = Array.from({ length: USERS }, (_, i) => uniqueId(`u${i}`));
    const devices = await Promise.all(
      users.map(async (u) => [await connect(A.url, u, "one"), await connect(A.url, u, "two"), await connect(B.url, u, "three")]),
    );

    const intents: Intent[] = [];
    const replies = new Map<Intent, SendReply[]>();
    const emit = (s: ClientSocket, intent: Intent) =>
      (s.timeout(30_000).emitWithAck as unknown as (ev: string, p: unknown) => Promise<SendReply>)
        .call(s, "message:send", { clientMsgId: intent.clientMsgId, to: intent.to, content: intent.content })
        .then(
          (r) => replies.get(intent)!.push(r),
          () => replies.get(intent)!.push({ ok: false, error: { code: "INTERNAL", message: "no ack in 30 s" } }),
        );
    const started = Date.now();
    await Promise.all(
      users.map(async (from, u) => {
        const [one, two, three] = devices[u]!;
        for (let k = 0; k < PER_USER; k++) {
          const intent = newIntent({
            sender: u,
            from,
            clientMsgId: `dup-${u}-${k}`,
            to: recipients[(u + k) % RECIPIENTS]!.userId,
            content: `race ${k}`,
          });
          intents.push(intent);
          replies.set(intent, []);
          // All four in the same tick: no copy waits for another's answer.
          await Promise.all([emit(one!, intent), emit(one!, intent), emit(two!, intent), emit(three!, intent)]);
        }
      }),
    );
    const floodMs = Date.now() - started;

    const stats = { ...newFloodStats(intents, started), finishedAt: Date.now() };
    const freshPerMessage = new Map<number, number>();
    for (const intent of intents) {
      const list = replies.get(intent)!;
      let fresh = 0;
      for (const r of list) {
        if (r.ok) {
          intent.okReplies++;
          intent.okIds.add(r.message.id);
          if (r.duplicate) {
            intent.duplicateReplies++;
            stats.duplicateReplies++;
          } else fresh++;
        } else if (r.error.code === "UNAVAILABLE") {
          intent.unavailable++;
          stats.unavailable++;
        } else {
          intent.errors.push(r.error.code);
          stats.otherErrors++;
        }
      }
      if (intent.okReplies > 0) stats.acked++;
      freshPerMessage.set(fresh, (freshPerMessage.get(fresh) ?? 0) + 1);
    }
    const { figures, settledMs, settled } = await settle(cluster.pg, stats, recipients, 60_000);
    // No fault here, while the copies of each message race between the two nodes' transactions:
    // one conversation's seqs are stored by both nodes, and live order must hold anyway.
    const live = liveInversions(recipients.map((r) => r.order));
    const sameIdInAllOks = intents.filter((i) => i.okIds.size === 1 && i.okReplies === 4).length;
    printFigures("5 duplicate race", figures, {
      emits: intents.length * 4,
      okReplies: intents.reduce((n, i) => n + i.okReplies, 0),
      allFourOkSameId: sameIdInAllOks,
      duplicateFalsePerMessage: [...freshPerMessage].sort((a, b) => a[0] - b[0]).map(([f, n]) => `${f}:${n}`).join(","),
      floodMs,
      settleMs: settledMs,
      liveInversions: live.outside,
    });

    expect(figures.duplicateRows, "duplicate rows per (from_user_id, client_msg_id)").to.equal(0);
    expect(figures.okIdMismatch, "copies answered with different message ids").to.equal(0);
    expect(figures.storedRows).to.equal(intents.length);
    expect(figures.notStored).to.equal(0);
    expect(figures.ackedLost).to.equal(0);
    expect(figures.otherErrors, "copies answered with an error other than UNAVAILABLE").to.equal(0);
    expect(figures.seqGaps, "conversations with a seq gap").to.equal(0);
    expect(figures.undelivered).to.equal(0);
    // Order (docs/protocol.md "Ordering and gaps"): backlog pages in seq order; a client that
    // orders by seq, as the SDK does, holds every conversation 1..n in order.
    expect(figures.backlogInversions, "backlog messages out of seq order within a sync").to.equal(0);
    expect(figures.orderedIncomplete, "conversations a seq-ordering client would not hold complete and in order").to.equal(0);
    expect(live.outside, "live arrivals out of seq order (no fault: nodes and Redis up)").to.equal(0);
    expect(figures.misaddressed).to.equal(0);
    expect(figures.sentLeft, `message_delivery rows still 'sent' after ${settled ? "settling" : "the 60 s settle timeout"}`).to.equal(0);
    // One copy stored it; every other copy is a retry and says so.
    expect([...freshPerMessage.keys()], "copies answered duplicate: false, per message").to.deep.equal([1]);
  });
});
