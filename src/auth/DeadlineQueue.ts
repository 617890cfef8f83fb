/**
 * One deadline per key, for many keys, on a single timer: a binary min-heap ordered by
 * deadline and one `setTimeout` armed for the earliest. A key costs a Map entry and a small
 * heap item (no closure, no timer object of its own), so 10 000 idle sockets with token
 * expiries cost about as much as 10 000 numbers (docs/auth.md has the measurements).
 *
 * Replacing or deleting a deadline leaves its old heap item behind; it is recognised by its
 * generation and skipped when it surfaces, and the heap is rebuilt when such leftovers
 * outnumber the live items.
 */

type Item<K> = { at: number; key: K; gen: number };

/** setTimeout's largest delay; a later deadline is reached in several hops. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class DeadlineQueue<K> {
  private readonly live = new Map<K, { at: number; gen: number }>();
  private heap: Item<K>[] = [];
  private nextGen = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;
  private stopped = false;

  /**
   * @param onDue called once per key whose deadline passed, with the key already removed
   *   (it may set a new deadline for the same key). A throwing callback does not stop the rest.
   * @param now the time source @default Date.now
   */
  constructor(
    private readonly onDue: (key: K) => void,
    private readonly now: () => number = Date.now,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get size(): number {
    return this.live.size;
  }

  /** Sets (or replaces) `key`'s deadline, in epoch milliseconds. */
  set(key: K, at: number): void {
    if (this.stopped) return;
    const gen = this.nextGen++;
    this.live.set(key, { at, gen });
    this.push({ at, key, gen });
    if (this.heap.length > 2 * this.live.size + 1024) this.rebuild();
    this.arm();
  }

  delete(key: K): void {
    this.live.delete(key);
    // The timer stays armed: it fires at most once for nothing and re-arms for what is left.
  }

  /** Fires nothing more; for shutdown. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.live.clear();
    this.heap = [];
  }

  /** Pops every item that is due and calls back for the live ones. Public for the benchmark. */
  sweep(): number {
    const now = this.now();
    let fired = 0;
    while (this.heap.length && this.heap[0]!.at <= now) {
      const item = this.pop();
      const current = this.live.get(item.key);
      if (!current || current.gen !== item.gen) continue;
      this.live.delete(item.key);
      fired++;
      try {
        this.onDue(item.key);
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
      this.dropStale();
      this.arm();
    }, delay);
    this.timer.unref();
  }

  /** Leftovers at the top would otherwise re-arm the timer for deadlines nobody has any more. */
  private dropStale(): void {
    while (this.heap.length && this.live.get(this.heap[0]!.key)?.gen !== this.heap[0]!.gen) this.pop();
  }

  private rebuild(): void {
    this.heap = [];
    for (const [key, { at, gen }] of this.live) this.push({ at, key, gen });
  }

  private push(item: Item<K>): void {
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= item.at) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = item;
  }

  private pop(): Item<K> {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const child = r < h.length && h[r]!.at < h[l]!.at ? r : l;
        if (h[child]!.at >= last.at) break;
        h[i] = h[child]!;
        i = child;
      }
      h[i] = last;
    }
    return top;
  }
}
