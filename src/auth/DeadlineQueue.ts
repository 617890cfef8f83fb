/**
 * One deadline per key, for many keys, on a single timer: a binary min-heap of deadlines and
 * one `setTimeout` armed for the earliest. A key costs a Map entry and one small node that
 * knows its place in the heap (so a deadline is moved or removed in O(log n), and nothing is
 * left behind); no timer object and no closure of its own. 10 000 sockets with token
 * deadlines cost one timer (docs/auth.md has the measurements).
 */

type Node<K> = { at: number; key: K; index: number };

/** setTimeout's largest delay; a later deadline is reached in several hops. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class DeadlineQueue<K> {
  private readonly nodes = new Map<K, Node<K>>();
  private readonly heap: Node<K>[] = [];
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;
  private stopped = false;

  /**
   * @param onDue called once for a key whose deadline passed, with the deadline it had; the
   *   key is already removed (it may be set again). A throwing callback does not stop the rest.
   * @param now the time source @default Date.now
   */
  constructor(
    private readonly onDue: (key: K, at: number) => void,
    private readonly now: () => number = Date.now,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get size(): number {
    return this.nodes.size;
  }

  /** Sets (or moves) `key`'s deadline, in epoch milliseconds. */
  set(key: K, at: number): void {
    if (this.stopped) return;
    const node = this.nodes.get(key);
    if (node) {
      const earlier = at < node.at;
      node.at = at;
      if (earlier) this.up(node.index);
      else this.down(node.index);
    } else {
      const fresh = { at, key, index: this.heap.length };
      this.nodes.set(key, fresh);
      this.heap.push(fresh);
      this.up(fresh.index);
    }
    this.arm();
  }

  delete(key: K): void {
    const node = this.nodes.get(key);
    if (!node) return;
    this.nodes.delete(key);
    this.removeAt(node.index);
    // The timer stays armed: at worst it wakes once for nothing and re-arms for what is left.
  }

  /** Fires nothing more; for shutdown. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.nodes.clear();
    this.heap.length = 0;
  }

  /** Calls back for every key that is due; returns how many. Public for tests and the benchmark. */
  sweep(): number {
    const now = this.now();
    let fired = 0;
    while (this.heap.length && this.heap[0]!.at <= now) {
      const node = this.heap[0]!;
      this.nodes.delete(node.key);
      this.removeAt(0);
      fired++;
      try {
        this.onDue(node.key, node.at);
      } catch (err) {
        this.onError(err);
      }
    }
    return fired;
  }

  private arm(): void {
    const next = this.heap[0];
    if (!next || this.stopped) return;
    if (this.timer && next.at >= this.armedFor) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = next.at;
    // At least 1 ms: a timer can wake a hair before `at` by Date.now(); it then sleeps again.
    const delay = Math.min(MAX_DELAY_MS, Math.max(1, next.at - this.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.armedFor = Infinity;
      this.sweep();
      this.arm();
    }, delay);
    this.timer.unref();
  }

  private removeAt(i: number): void {
    const last = this.heap.pop()!;
    if (i === this.heap.length) return; // it was the last one
    this.heap[i] = last;
    last.index = i;
    this.down(i);
    this.up(last.index);
  }

  private up(i: number): void {
    const h = this.heap;
    const node = h[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= node.at) break;
      h[i] = h[parent]!;
      h[i]!.index = i;
      i = parent;
    }
    h[i] = node;
    node.index = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const node = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && h[r]!.at < h[l]!.at ? r : l;
      if (h[child]!.at >= node.at) break;
      h[i] = h[child]!;
      h[i]!.index = i;
      i = child;
    }
    h[i] = node;
    node.index = i;
  }
}
