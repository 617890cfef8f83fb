/**
 * What push notifications need from the outside world: the pushkeys and the durable
 * outbox (storage/SqlPushStore), and a push gateway (push/MatrixPushGateway).
 */

export type PushRegistration = { pushkey: string; userId: string; appId: string; deviceId: string | null; at: Date };

/** One registered device, as the gateway is told about it. */
export type PushDevice = { appId: string; pushkey: string; registeredAt: Date };

/** A push in the outbox: one (message, recipient) pair. */
export type PushKey = { messageId: string; recipient: string };

/**
 * An outbox row this node just claimed, with the message's state as of the claim. `message`
 * is null when the message is gone (swept by expiry).
 */
export type ClaimedPush = PushKey & {
  /** Claims so far, this one included. */
  attempts: number;
  /** When the push was first due; retries stop PUSH_RETRY_FOR_MS after it. */
  firstDueAt: Date;
  message: {
    conversationId: string;
    from: string;
    content: string;
    /** The type of the media it carries, if any: the push names it ("Photo"). */
    mediaMime: string | null;
    expiresAt: Date;
    /** Deleted for everyone: never pushed. */
    deleted: boolean;
    /** The recipient's delivery status: anything but "sent" means a device confirmed it. */
    status: "sent" | "delivered" | "read";
  } | null;
};

export type PushTarget = { devices: PushDevice[]; unread: number };

/** Durable push state. Every method throws StorageUnavailableError when the database fails. */
export interface PushStore {
  /** Upserts by pushkey: a pushkey registered again (by anyone) moves to the new registration. */
  register(reg: PushRegistration): Promise<void>;
  /** Removes the user's own pushkey; `foreign` tells that it exists but belongs to someone else. */
  unregister(userId: string, pushkey: string): Promise<{ removed: number; foreign: boolean }>;
  /**
   * Claims up to `limit` rows due at `now`, skipping rows another node is claiming at the
   * same moment (FOR UPDATE SKIP LOCKED), and moves their due time to `leaseUntil`: no other
   * node takes them while this one sends, and another one does if this one dies. Commits
   * before it returns: nothing is held while the gateway is called.
   */
  claimDue(now: Date, leaseUntil: Date, limit: number): Promise<ClaimedPush[]>;
  /** Each recipient's registered devices (oldest first) and unread text messages. */
  targets(recipients: string[], now: Date): Promise<Map<string, PushTarget>>;
  /** Removes these rows: sent, cancelled or given up. */
  complete(keys: PushKey[]): Promise<void>;
  /** Sets the next attempt's due time of these rows. */
  reschedule(rows: (PushKey & { dueAt: Date })[]): Promise<void>;
  /** Removes pushkeys the gateway rejected, if they still belong to the same user; returns how many. */
  removePushkeys(keys: { userId: string; pushkey: string }[]): Promise<number>;
  /** Rows in the outbox, and the first due time of the oldest. */
  outboxStats(): Promise<{ depth: number; oldestFirstDueAt: Date | null }>;
}

/** What one notify says: the message's ids, never its text unless the operator asked for it. */
export type PushNotification = {
  messageId: string;
  conversationId: string;
  from: string;
  unread: number;
  devices: PushDevice[];
  /** Only with PUSH_INCLUDE_CONTENT=true. */
  content?: string;
};

/** `ok`: the gateway took it (2xx); `rejected` lists pushkeys it says are dead. */
export type GatewayAnswer = { ok: true; rejected: string[] } | { ok: false; reason: string };

export interface PushGateway {
  /** Never throws: a failure (non-2xx, timeout, refused connection, garbage) is `ok: false`. */
  notify(notification: PushNotification, signal?: AbortSignal): Promise<GatewayAnswer>;
}

/** Counters the push worker reports; the app feeds them to Prometheus. */
export interface PushMetrics {
  sent(count: number): void;
  retried(count: number): void;
  failed(count: number): void;
  rejected(count: number): void;
  cancelled(count: number): void;
}

export const noPushMetrics: PushMetrics = { sent() {}, retried() {}, failed() {}, rejected() {}, cancelled() {} };
