import { expect } from "chai";
import type { Message } from "../src/protocol";
import { ORDER_DEFAULTS, OrderedEmit, type EmitAck, type GiveUpReason, type OrderOptions } from "../src/transport/orderedEmit";
import { waitFor } from "./helpers/wait";

const ME = "me";

const msg = (seq: number, conversationId = "c1", group: Message["group"] = null): Message =>
  ({
    id: `${conversationId}-${seq}`,
    conversationId,
    seq,
    from: "other",
    kind: group ? "group" : "text",
    group,
  }) as unknown as Message;

describe("OrderedEmit (one socket's live message:new in seq order)", () => {
  const made: OrderedEmit[] = [];
  afterEach(() => made.splice(0).forEach((o) => o.close()));

  /** Emits into `out` as "conversation:seq"; every ack answered at once, or kept in `acks`. */
  function make(options: Partial<OrderOptions>, now?: () => number) {
    const out: string[] = [];
    const acks: EmitAck[] = [];
    const gaveUp: GiveUpReason[] = [];
    const o = new OrderedEmit(
      ME,
      (m, ack) => {
        out.push(`${m.conversationId}:${m.seq}`);
        acks.push(ack);
      },
      { ...ORDER_DEFAULTS, ...options },
      { ...(now ? { now } : {}), gaveUp: (reason) => gaveUp.push(reason) },
    );
    made.push(o);
    return { o, out, acks, gaveUp };
  }

  /** Gives the conversation a position (seq `last`) through the first window. */
  async function started(o: OrderedEmit, out: string[], last: number, conversationId = "c1"): Promise<void> {
    o.offer(msg(last, conversationId), () => {});
    await waitFor(() => out.includes(`${conversationId}:${last}`), "the first window to close");
  }

  it("puts what arrives together in seq order before the first goes out", async () => {
    const { o, out } = make({ firstWindowMs: 20 });
    o.offer(msg(7), () => {});
    o.offer(msg(5), () => {});
    o.offer(msg(6), () => {});
    expect(out).to.deep.equal([]);
    await waitFor(() => out.length === 3, "three emits");
    expect(out).to.deep.equal(["c1:5", "c1:6", "c1:7"]);
  });

  it("sends last+1 at once and holds a higher seq until the missing ones come", async () => {
    const { o, out, gaveUp } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 10);
    o.offer(msg(11), () => {});
    expect(out).to.deep.equal(["c1:10", "c1:11"]);
    o.offer(msg(14), () => {});
    o.offer(msg(13), () => {});
    expect(out).to.deep.equal(["c1:10", "c1:11"]);
    o.offer(msg(12), () => {});
    expect(out).to.deep.equal(["c1:10", "c1:11", "c1:12", "c1:13", "c1:14"]);
    expect(gaveUp).to.deep.equal([]);
  });

  it("sends a lower seq (a redelivery) at once, and keeps its position", async () => {
    const { o, out } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 10);
    o.offer(msg(4), () => {});
    o.offer(msg(11), () => {});
    expect(out).to.deep.equal(["c1:10", "c1:4", "c1:11"]);
  });

  it("gives a gap up after the hold: what waits goes out in order, the late one after", async () => {
    const { o, out, gaveUp } = make({ firstWindowMs: 5, holdMs: 30 });
    await started(o, out, 1);
    o.offer(msg(4), () => {});
    o.offer(msg(3), () => {});
    await waitFor(() => out.length === 3, "the hold to end");
    expect(out).to.deep.equal(["c1:1", "c1:3", "c1:4"]);
    o.offer(msg(2), () => {});
    o.offer(msg(5), () => {});
    expect(out).to.deep.equal(["c1:1", "c1:3", "c1:4", "c1:2", "c1:5"]);
    expect(gaveUp).to.deep.equal(["hold"]);
  });

  it("gives a gap up at once past maxHeld", async () => {
    const { o, out, gaveUp } = make({ firstWindowMs: 5, holdMs: 60_000, maxHeld: 3 });
    await started(o, out, 1);
    for (const seq of [3, 4, 5]) o.offer(msg(seq), () => {});
    expect(out).to.deep.equal(["c1:1"]);
    o.offer(msg(6), () => {});
    expect(out).to.deep.equal(["c1:1", "c1:3", "c1:4", "c1:5", "c1:6"]);
    expect(gaveUp).to.deep.equal(["max_held"]);
  });

  it("does not wait for a seq the socket wrote itself (acknowledged, never emitted)", async () => {
    const { o, out } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 1);
    o.offer(msg(3), () => {});
    expect(out).to.deep.equal(["c1:1"]);
    o.acknowledged(msg(2));
    expect(out).to.deep.equal(["c1:1", "c1:3"]);
    o.acknowledged(msg(4));
    o.offer(msg(5), () => {});
    expect(out).to.deep.equal(["c1:1", "c1:3", "c1:5"]);
  });

  it("keeps conversations apart: a gap in one holds nothing of another", async () => {
    const { o, out } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 1, "a");
    await started(o, out, 1, "b");
    o.offer(msg(3, "a"), () => {});
    o.offer(msg(2, "b"), () => {});
    expect(out).to.deep.equal(["a:1", "b:1", "b:2"]);
  });

  it("starts again at the entry that re-adds this user, and forgets at the one that removes them", async () => {
    const { o, out } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 1);
    o.offer(msg(2, "c1", { action: "remove", userIds: [ME], title: null, role: null }), () => {});
    expect(o.size).to.equal(0);
    await started(o, out, 1, "other");
    o.offer(msg(2, "other"), () => {});
    // A position kept past a removal (the entry missed): the add entry still goes at once.
    const { o: o2, out: out2 } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o2, out2, 1);
    o2.offer(msg(9, "c1", { action: "add", userIds: [ME], title: null, role: null }), () => {});
    o2.offer(msg(10), () => {});
    expect(out2).to.deep.equal(["c1:1", "c1:9", "c1:10"]);
  });

  it("forgets conversations idle for idleMs", async () => {
    let now = 0;
    const { o, out } = make({ firstWindowMs: 5, idleMs: 1000 }, () => now);
    await started(o, out, 1, "a");
    await started(o, out, 1, "b");
    expect(o.size).to.equal(2);
    now = 5000;
    await started(o, out, 1, "c");
    expect(o.size).to.equal(1);
  });

  it("fails what it holds when closed, and emits nothing after", async () => {
    const { o, out } = make({ firstWindowMs: 5, holdMs: 60_000 });
    await started(o, out, 1);
    const failed: (Error | null)[] = [];
    o.offer(msg(3), (err) => failed.push(err));
    o.offer(msg(7, "new"), (err) => failed.push(err));
    o.close();
    expect(failed).to.have.length(2);
    expect(failed.every((e) => e instanceof Error)).to.equal(true);
    expect(out).to.deep.equal(["c1:1"]);
    expect(o.size).to.equal(0);
  });
});
