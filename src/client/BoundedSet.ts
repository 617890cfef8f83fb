/** A set that forgets its oldest members beyond `capacity`: de-duplication in bounded memory. */
export class BoundedSet<T> {
  private readonly items = new Set<T>();

  constructor(readonly capacity: number) {}

  has(item: T): boolean {
    return this.items.has(item);
  }

  add(item: T): void {
    this.items.delete(item);
    this.items.add(item);
    // A Set iterates in insertion order: the first one is the oldest.
    while (this.items.size > this.capacity) this.items.delete(this.items.values().next().value as T);
  }

  get size(): number {
    return this.items.size;
  }
}
