/**
 * The outbox in the browser's IndexedDB: pending sends survive a reload, a crash or a closed
 * tab, and go out (with their original clientMsgId) the next time the app connects. Two tabs
 * of one origin share it; a send both tabs make is still stored once (the server
 * de-duplicates by clientMsgId).
 */
import type { OutboxStorage, PendingEntry } from "./OutboxStorage";

/* The few IndexedDB types used, declared here so the SDK compiles without the DOM library. */
type IdbRequest<T> = { result: T; error: unknown; onsuccess: (() => void) | null; onerror: (() => void) | null };
type IdbOpenRequest = IdbRequest<IdbDatabase> & { onupgradeneeded: (() => void) | null; onblocked: (() => void) | null };
type IdbStore = {
  getAll(): IdbRequest<PendingEntry[]>;
  put(value: PendingEntry): IdbRequest<unknown>;
  delete(key: string): IdbRequest<unknown>;
};
type IdbTransaction = { objectStore(name: string): IdbStore; oncomplete: (() => void) | null; onerror: (() => void) | null; onabort: (() => void) | null; error: unknown };
type IdbDatabase = {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string, options: { keyPath: string }): unknown;
  transaction(store: string, mode: "readonly" | "readwrite"): IdbTransaction;
  close(): void;
};
export type IdbFactory = { open(name: string, version?: number): IdbOpenRequest };

const STORE = "outbox";

export class IndexedDbOutboxStorage implements OutboxStorage {
  private db: Promise<IdbDatabase> | undefined;

  /**
   * @param name database name; one per signed-in user keeps users' outboxes apart.
   * @param factory @default globalThis.indexedDB
   */
  constructor(
    private readonly name = "ticks-outbox",
    private readonly factory: IdbFactory = (globalThis as unknown as { indexedDB: IdbFactory }).indexedDB,
  ) {
    if (!factory) throw new Error("IndexedDB is not available here; use MemoryOutboxStorage");
  }

  private open(): Promise<IdbDatabase> {
    return (this.db ??= new Promise((resolve, reject) => {
      const req = this.factory.open(this.name, 1);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: "clientMsgId" });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error("IndexedDB upgrade blocked by another tab"));
    }));
  }

  private async run<T>(mode: "readonly" | "readwrite", work: (store: IdbStore) => IdbRequest<T>): Promise<T> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = work(tx.objectStore(STORE));
      // Resolved when the transaction commits: only then is the entry durable.
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  }

  load(): Promise<PendingEntry[]> {
    return this.run("readonly", (s) => s.getAll());
  }

  async put(entry: PendingEntry): Promise<void> {
    await this.run("readwrite", (s) => s.put(entry));
  }

  async remove(clientMsgId: string): Promise<void> {
    await this.run("readwrite", (s) => s.delete(clientMsgId));
  }

  async close(): Promise<void> {
    if (this.db) (await this.db).close();
    this.db = undefined;
  }
}
