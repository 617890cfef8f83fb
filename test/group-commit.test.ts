import { expect } from "chai";
import { GroupCommit, type BatchOutcome } from "../src/storage/GroupCommit";

/** The batching itself, with a fake flush: what shares a batch, what waits, in what order. */
describe("GroupCommit", () => {
  type Req = { key: string; n: number };
  const deferred = () => {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    return { done, release };
  };
  /** Keyed requests, answered with their own name; the first batch stays in flight until `gate.release()`. */
  const keyedWithGate = (options: { maxConcurrent: number; overflowAt?: number; stallMs?: number }) => {
    const gate = deferred();
    const batches: string[][] = [];
    const gc = new GroupCommit<Req, string>(
      async (reqs) => {
        batches.push(reqs.map((r) => `${r.key}${r.n}`));
        if (batches.length === 1) await gate.done;
        return reqs.map((r) => ({ ok: true, value: `${r.key}${r.n}` }));
      },
      { maxBatch: 10, keyOf: (r) => r.key, ...options },
    );
    return { gate, batches, gc };
  };

  it("puts requests of one tick in one batch and settles each with its own outcome", async () => {
    const batches: number[][] = [];
    const gc = new GroupCommit<number, number>(
      async (reqs) => {
        batches.push(reqs);
        return reqs.map((n): BatchOutcome<number> => (n < 0 ? { ok: false, error: new Error(`bad ${n}`) } : { ok: true, value: n * 2 }));
      },
      { maxBatch: 3, maxConcurrent: 1 },
    );
    const results = await Promise.allSettled([1, 2, -3, 4].map((n) => gc.submit(n)));
    expect(batches).to.deep.equal([[1, 2, -3], [4]]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).to.deep.equal([2, 4, "bad -3", 8]);
  });

  it("with keyOf, never runs one key in two batches at once, and keeps each key's order", async () => {
    const { gate, batches, gc } = keyedWithGate({ maxConcurrent: 4 });
    const first = [gc.submit({ key: "a", n: 1 }), gc.submit({ key: "b", n: 1 })];
    await new Promise((r) => setImmediate(r));
    // a and b are in flight: a2 and b2 wait, c1 goes in a second batch at once.
    const later = [gc.submit({ key: "a", n: 2 }), gc.submit({ key: "c", n: 1 }), gc.submit({ key: "b", n: 2 })];
    expect(await later[1]).to.equal("c1");
    expect(batches).to.deep.equal([["a1", "b1"], ["c1"]]);
    gate.release();
    expect(await Promise.all([...first, later[0], later[2]])).to.deep.equal(["a1", "b1", "a2", "b2"]);
    expect(batches).to.deep.equal([["a1", "b1"], ["c1"], ["a2", "b2"]]);
  });

  it("starts a small batch's successor before settling its callers, after its commit", async () => {
    const gate = deferred();
    const events: string[] = [];
    const gc = new GroupCommit<string, string>(
      async (reqs) => {
        events.push(`flush ${reqs.join(",")}`);
        if (reqs[0] === "a") await gate.done;
        events.push(`committed ${reqs.join(",")}`);
        return reqs.map((r) => ({ ok: true, value: r }));
      },
      { maxBatch: 16, maxConcurrent: 1 },
    );
    const a = gc.submit("a").then((v) => events.push(`caller ${v}`));
    await new Promise((r) => setImmediate(r));
    const b = gc.submit("b").then((v) => events.push(`caller ${v}`));
    gate.release();
    await Promise.all([a, b]);
    expect(events).to.deep.equal(["flush a", "committed a", "flush b", "committed b", "caller a", "caller b"]);
  });

  it("with overflowAt, starts a batch beside a running one only once that many wait; fewer go together after it", async () => {
    const { gate, batches, gc } = keyedWithGate({ maxConcurrent: 2, overflowAt: 3, stallMs: 60_000 });
    const first = gc.submit({ key: "a", n: 1 });
    await new Promise((r) => setImmediate(r));
    const two = [gc.submit({ key: "b", n: 1 }), gc.submit({ key: "c", n: 1 })];
    await new Promise((r) => setTimeout(r, 20));
    expect(batches, "two waiting: no second batch yet").to.deep.equal([["a1"]]);
    const third = gc.submit({ key: "d", n: 1 });
    expect(await Promise.all([...two, third])).to.deep.equal(["b1", "c1", "d1"]);
    expect(batches, "the third opens the second batch").to.deep.equal([["a1"], ["b1", "c1", "d1"]]);
    gate.release();
    expect(await first).to.equal("a1");
  });

  it("with overflowAt, lets the next batch start beside one that has run for stallMs", async () => {
    const { gate, batches, gc } = keyedWithGate({ maxConcurrent: 2, overflowAt: 100, stallMs: 40 });
    const stuck = gc.submit({ key: "a", n: 1 });
    await new Promise((r) => setImmediate(r));
    const started = performance.now();
    const [b, a2] = [gc.submit({ key: "b", n: 1 }), gc.submit({ key: "a", n: 2 })];
    expect(await b).to.equal("b1");
    expect(performance.now() - started).to.be.at.least(30);
    expect(batches, "a2 waits for its key, b1 goes after the stall").to.deep.equal([["a1"], ["b1"]]);
    gate.release();
    expect(await Promise.all([stuck, a2])).to.deep.equal(["a1", "a2"]);
    expect(batches).to.deep.equal([["a1"], ["b1"], ["a2"]]);
  });
});
