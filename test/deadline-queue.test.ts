import { expect } from "chai";
import { DeadlineQueue } from "../src/auth/DeadlineQueue";
import { waitFor } from "./helpers/device";

describe("DeadlineQueue (one timer for every socket's token deadline)", () => {
  const queues: DeadlineQueue<string>[] = [];
  const make = (onDue: (key: string) => void, now?: () => number) => {
    const q = new DeadlineQueue(onDue, now);
    queues.push(q);
    return q;
  };
  afterEach(() => queues.splice(0).forEach((q) => q.stop()));

  it("fires each key once, in deadline order, whatever the order of sets, moves and deletes", () => {
    let now = 0;
    const fired: number[] = [];
    const q = make((k) => fired.push(Number(k)), () => now);
    const want = new Map<number, number>();
    for (let step = 0; step < 20_000; step++) {
      const k = Math.floor(Math.random() * 2000);
      if (Math.random() < 0.2) {
        q.delete(String(k));
        want.delete(k);
      } else {
        const at = Math.floor(Math.random() * 1_000_000);
        q.set(String(k), at);
        want.set(k, at);
      }
    }
    now = Infinity;
    q.sweep();
    const ats = fired.map((k) => want.get(k)!);
    expect(ats).to.deep.equal([...ats].sort((a, b) => a - b));
    expect(new Set(fired)).to.deep.equal(new Set(want.keys()));
    expect(fired).to.have.length(want.size);
  });

  it("fires each key once, in deadline order, whatever the insertion order", () => {
    let now = 0;
    const fired: string[] = [];
    const q = make((k) => fired.push(k), () => now);
    const keys = Array.from({ length: 500 }, (_, i) => i);
    for (const i of [...keys].sort(() => Math.random() - 0.5)) q.set(`k${i}`, 1000 + i * 10);
    now = 1000 + 250 * 10;
    q.sweep();
    expect(fired).to.deep.equal(keys.slice(0, 251).map((i) => `k${i}`));
    now = Infinity;
    q.sweep();
    expect(fired).to.have.length(500);
    expect(q.size).to.equal(0);
  });

  it("moving a deadline (earlier or later) reorders it; deleting it cancels it", () => {
    let now = 0;
    const fired: string[] = [];
    const q = make((k) => fired.push(k), () => now);
    q.set("a", 100);
    q.set("b", 200);
    q.set("c", 400);
    q.set("a", 300);
    q.set("c", 50);
    q.delete("b");
    now = 250;
    q.sweep();
    expect(fired).to.deep.equal(["c"]);
    now = 300;
    q.sweep();
    expect(fired).to.deep.equal(["c", "a"]);
  });

  it("the callback may set the same key again (expiring → expired); a throwing callback does not stop the others", () => {
    let now = 0;
    const fired: string[] = [];
    const q = new DeadlineQueue<string>(
      (k) => {
        fired.push(k);
        if (k === "bad") throw new Error("boom");
        if (fired.filter((f) => f === k).length === 1) q.set(k, now);
      },
      () => now,
      () => fired.push("error"),
    );
    queues.push(q);
    q.set("bad", 10);
    q.set("good", 10);
    now = 10;
    q.sweep();
    expect(fired.filter((f) => f === "good")).to.have.length(2);
    expect(fired).to.include("error");
  });

  it("runs on real time with a single timer; moved and deleted deadlines leave nothing behind", async () => {
    const fired: string[] = [];
    const q = make((k) => fired.push(k));
    const t0 = Date.now();
    q.set("late", t0 + 200);
    q.set("early", t0 + 50);
    for (let i = 0; i < 5000; i++) q.set("churn", t0 + 60_000 - i); // moved 5000 times
    for (let i = 0; i < 100; i++) q.set(`gone-${i}`, t0 + 100 + i);
    for (let i = 0; i < 100; i++) q.delete(`gone-${i}`);
    await waitFor(() => fired.length === 2, "both deadlines", 2000);
    expect(fired).to.deep.equal(["early", "late"]);
    expect((q as unknown as { heap: unknown[] }).heap.length).to.equal(1);
    expect(q.size).to.equal(1);
  });
});
