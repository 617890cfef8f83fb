import type { Knex } from "knex";
import type { ClaimedPush, PushDevice, PushKey, PushRegistration, PushStore, PushTarget } from "../messaging/pushPorts";
import { rowsOf, toDate as date, toNumber } from "./rows";
import { unavailableOnDbError } from "./unavailable";

/**
 * Most pushkeys one user holds; registering another drops their oldest. A push carries all
 * of them, so this bounds its size whatever a client does.
 */
export const MAX_PUSHKEYS_PER_USER = 32;

/**
 * The pushkeys and the push outbox in PostgreSQL (or PGlite). The outbox rows themselves are
 * written by the message append (storage/appendBatch.ts) and removed by receipts
 * (SqlMessageStore) and the expiry sweep (ON DELETE CASCADE); this class serves the worker.
 */
export class SqlPushStore implements PushStore {
  constructor(private readonly db: Knex) {}

  register(reg: PushRegistration): Promise<void> {
    // One statement: the upsert, and the user's oldest other pushkeys beyond the limit go.
    // (The DELETE sees the table as it was before the upsert, hence "other" and limit - 1.)
    // registered_at is kept strictly increasing per user (two registrations can share a
    // millisecond), so "oldest" is always the one registered first.
    return unavailableOnDbError(async () => {
      await this.db.raw(
        `WITH upsert AS (
           INSERT INTO pushkeys (pushkey, user_id, app_id, device_id, registered_at)
           SELECT ?, ?, ?, ?, GREATEST(?::timestamptz,
             (SELECT max(registered_at) + interval '1 microsecond' FROM pushkeys WHERE user_id = ?))
           ON CONFLICT (pushkey) DO UPDATE SET user_id = EXCLUDED.user_id, app_id = EXCLUDED.app_id,
             device_id = EXCLUDED.device_id, registered_at = EXCLUDED.registered_at
         )
         DELETE FROM pushkeys WHERE pushkey IN (
           SELECT pushkey FROM pushkeys WHERE user_id = ? AND pushkey <> ?
           ORDER BY registered_at DESC OFFSET ?
         )`,
        [reg.pushkey, reg.userId, reg.appId, reg.deviceId, reg.at, reg.userId, reg.userId, reg.pushkey, MAX_PUSHKEYS_PER_USER - 1],
      );
    });
  }

  unregister(userId: string, pushkey: string): Promise<{ removed: number; foreign: boolean }> {
    return unavailableOnDbError(async () => {
      const [row] = rowsOf<{ removed: number | string; foreign: boolean }>(
        await this.db.raw(
          `WITH gone AS (DELETE FROM pushkeys WHERE pushkey = ? AND user_id = ? RETURNING 1)
           SELECT (SELECT count(*) FROM gone) AS removed,
             EXISTS (SELECT 1 FROM pushkeys WHERE pushkey = ? AND user_id <> ?) AS foreign`,
          [pushkey, userId, pushkey, userId],
        ),
      );
      return { removed: toNumber(row!.removed), foreign: row!.foreign };
    });
  }

  claimDue(now: Date, leaseUntil: Date, limit: number): Promise<ClaimedPush[]> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{
        message_id: string;
        recipient_id: string;
        attempts: number;
        first_due_at: Date | string;
        conversation_id: string | null;
        from_user_id: string | null;
        content: string | null;
        media_mime: string | null;
        expires_at: Date | string | null;
        deleted: boolean | null;
        status: "sent" | "delivered" | "read" | null;
      }>(
        await this.db.raw(
          `WITH due AS (
             SELECT message_id, recipient_id FROM push_outbox WHERE due_at <= ?
             ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED
           ), claimed AS (
             UPDATE push_outbox o SET due_at = ?, attempts = o.attempts + 1
             FROM due WHERE o.message_id = due.message_id AND o.recipient_id = due.recipient_id
             RETURNING o.message_id, o.recipient_id, o.attempts, o.first_due_at
           )
           SELECT c.message_id, c.recipient_id, c.attempts, c.first_due_at,
             m.conversation_id, m.from_user_id, m.content, m.media->>'mime' AS media_mime, m.expires_at, m.deleted_at IS NOT NULL AS deleted, d.status
           FROM claimed c
           LEFT JOIN message_delivery d ON d.message_id = c.message_id AND d.recipient_id = c.recipient_id
           LEFT JOIN messages m ON m.message_id = c.message_id`,
          [now, limit, leaseUntil],
        ),
      );
      return rows.map((r) => ({
        messageId: r.message_id,
        recipient: r.recipient_id,
        attempts: toNumber(r.attempts),
        firstDueAt: date(r.first_due_at),
        message:
          r.conversation_id && r.status
            ? {
                conversationId: r.conversation_id,
                from: r.from_user_id!,
                content: r.content!,
                mediaMime: r.media_mime,
                expiresAt: date(r.expires_at!),
                deleted: r.deleted === true,
                status: r.status,
              }
            : null,
      }));
    });
  }

  targets(recipients: string[], now: Date): Promise<Map<string, PushTarget>> {
    return unavailableOnDbError(async () => {
      // Unread as conversation:list counts it, summed over the user's conversations.
      const [devices, unread] = await Promise.all([
        this.db.raw(
          `SELECT user_id, app_id, pushkey, registered_at FROM pushkeys
           WHERE user_id = ANY(?::text[]) ORDER BY registered_at, pushkey`,
          [recipients],
        ),
        this.db.raw(
          `SELECT d.recipient_id, count(*) AS n FROM message_delivery d
           JOIN messages m ON m.message_id = d.message_id
           WHERE d.recipient_id = ANY(?::text[]) AND d.status IN ('sent', 'delivered') AND m.expires_at > ?
             AND m.kind = 'text' AND m.deleted_at IS NULL
           GROUP BY d.recipient_id`,
          [recipients, now],
        ),
      ]);
      const map = new Map<string, PushTarget>(recipients.map((r) => [r, { devices: [] as PushDevice[], unread: 0 }]));
      for (const r of rowsOf<{ user_id: string; app_id: string; pushkey: string; registered_at: Date | string }>(devices)) {
        map.get(r.user_id)?.devices.push({ appId: r.app_id, pushkey: r.pushkey, registeredAt: date(r.registered_at) });
      }
      for (const r of rowsOf<{ recipient_id: string; n: number | string }>(unread)) {
        const target = map.get(r.recipient_id);
        if (target) target.unread = toNumber(r.n);
      }
      return map;
    });
  }

  complete(keys: PushKey[]): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return unavailableOnDbError(async () => {
      await this.db.raw(
        `DELETE FROM push_outbox o USING unnest(?::uuid[], ?::text[]) AS v(message_id, recipient_id)
         WHERE o.message_id = v.message_id AND o.recipient_id = v.recipient_id`,
        [keys.map((k) => k.messageId), keys.map((k) => k.recipient)],
      );
    });
  }

  reschedule(rows: (PushKey & { dueAt: Date })[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return unavailableOnDbError(async () => {
      await this.db.raw(
        `UPDATE push_outbox o SET due_at = v.due_at
         FROM unnest(?::uuid[], ?::text[], ?::timestamptz[]) AS v(message_id, recipient_id, due_at)
         WHERE o.message_id = v.message_id AND o.recipient_id = v.recipient_id`,
        [rows.map((r) => r.messageId), rows.map((r) => r.recipient), rows.map((r) => r.dueAt.toISOString())],
      );
    });
  }

  removePushkeys(keys: { userId: string; pushkey: string }[]): Promise<number> {
    if (keys.length === 0) return Promise.resolve(0);
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ pushkey: string }>(
        await this.db.raw(
          `DELETE FROM pushkeys p USING unnest(?::text[], ?::text[]) AS v(user_id, pushkey)
           WHERE p.pushkey = v.pushkey AND p.user_id = v.user_id RETURNING p.pushkey`,
          [keys.map((k) => k.userId), keys.map((k) => k.pushkey)],
        ),
      );
      return rows.length;
    });
  }

  outboxStats(): Promise<{ depth: number; oldestFirstDueAt: Date | null }> {
    return unavailableOnDbError(async () => {
      const [row] = rowsOf<{ depth: number | string; oldest: Date | string | null }>(
        await this.db.raw(`SELECT count(*) AS depth, min(first_due_at) AS oldest FROM push_outbox`),
      );
      return { depth: toNumber(row?.depth), oldestFirstDueAt: row?.oldest ? date(row.oldest) : null };
    });
  }
}
