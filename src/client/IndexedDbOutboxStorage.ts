/**
 * The outbox in the browser's IndexedDB: pending sends survive a reload, a crash or a closed
 * tab, and go out (with their original clientMsgId) the next time the app connects. Two tabs
 * of one origin share it; a send both tabs make is still stored once (the server
 * de-duplicates by clientMsgId).
 */
import type { OutboxStorage, PendingEntry, StatusState } from "./OutboxStorage";

/* The few IndexedDB types used, declared here so the SDK compiles without the DOM library. */
type IdbRequest<T> = { result: T; error: unknown; onsuccess: (() => void) | null; onerror: (() => void) | null };
type IdbOpenRequest = IdbRequest<IdbDatabase> & { onupgradeneeded: (() => void) | null; onblocked: (() => void) | null };
type IdbStore = {
  getAll(): IdbRequest<PendingEntry[]>;
  get(key: string): IdbRequest<unknown>;
  put(value: unknown): IdbRequest<unknown>;
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
/** v3 (database version 2): one record, the status stream state (StatusStreamSync). */
const STATUS_STORE = "status";
const STATUS_KEY = "stream";
const VERSION = 2;

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
      const req = this.factory.open(this.name, VERSION);
      // From nothing or from version 1 (outbox only): create what is missing, keep what is there.
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: "clientMsgId" });
        if (!req.result.objectStoreNames.contains(STATUS_STORE)) req.result.createObjectStore(STATUS_STORE, { keyPath: "key" });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error("IndexedDB upgrade blocked by another tab"));
    }));
  }

  private async run<T>(mode: "readonly" | "readwrite", work: (store: IdbStore) => IdbRequest<T>, store = STORE): Promise<T> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(store, mode);
      const req = work(tx.objectStore(store));
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

  async loadStatus(): Promise<StatusState | undefined> {
    const kept = (await this.run("readonly", (s) => s.get(STATUS_KEY), STATUS_STORE)) as (StatusState & { key: string }) | undefined;
    return kept ? { cursor: kept.cursor, statuses: kept.statuses } : undefined;
  }

  async saveStatus(state: StatusState): Promise<void> {
    await this.run("readwrite", (s) => s.put({ key: STATUS_KEY, ...state }), STATUS_STORE);
  }

  async close(): Promise<void> {
    if (this.db) (await this.db).close();
    this.db = undefined;
  }
}
