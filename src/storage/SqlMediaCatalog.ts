import { randomBytes } from "node:crypto";
import type { Knex } from "knex";
import type { MediaCatalog, MediaRecord } from "../media/ports";
import { rowsOf, toDate as date, toNumber } from "./rows";
import { unavailableOnDbError } from "./unavailable";

type MediaRow = {
  media_id: string;
  owner_id: string;
  mime: string;
  size: string | number | bigint;
  name: string | null;
  created_at: Date | string;
  stored_at: Date | string | null;
  sent_at: Date | string | null;
};

const COLUMNS = "md.media_id, md.owner_id, md.mime, md.size, md.name, md.created_at, md.stored_at, md.sent_at";

const toRecord = (r: MediaRow): MediaRecord => ({
  mediaId: r.media_id,
  ownerId: r.owner_id,
  mime: r.mime,
  size: toNumber(r.size),
  name: r.name,
  createdAt: date(r.created_at),
  storedAt: r.stored_at === null ? null : date(r.stored_at),
  sentAt: r.sent_at === null ? null : date(r.sent_at),
});

/**
 * The `media` table (migrations/20261202120000_media.ts) behind MediaService. Messages
 * refer to it by `messages.media_id`; the write that stores a message sets `sent_at`.
 */
export class SqlMediaCatalog implements MediaCatalog {
  constructor(private readonly db: Knex) {}

  create(media: Pick<MediaRecord, "mediaId" | "ownerId" | "mime" | "size" | "name" | "createdAt">): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw(
        `INSERT INTO media (media_id, owner_id, mime, size, name, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
        [media.mediaId, media.ownerId, media.mime, media.size, media.name, media.createdAt],
      );
    });
  }

  get(mediaId: string): Promise<MediaRecord | null> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<MediaRow>(await this.db.raw(`SELECT ${COLUMNS} FROM media md WHERE md.media_id = ?`, [mediaId]));
      return rows[0] ? toRecord(rows[0]) : null;
    });
  }

  /**
   * Visible: the caller's own upload, or carried by a message, neither expired nor deleted
   * for everyone, that the caller may see: a member's from their `from_seq` on, a former
   * member's within the window they keep (conversation_departures), as for history.
   */
  visibleTo(mediaId: string, userId: string, now: Date): Promise<MediaRecord | null> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<MediaRow>(
        await this.db.raw(
          `SELECT ${COLUMNS} FROM media md WHERE md.media_id = ? AND (md.owner_id = ? OR EXISTS (
             SELECT 1 FROM messages m
             WHERE m.media_id = md.media_id AND m.expires_at > ? AND m.deleted_at IS NULL AND (
               EXISTS (SELECT 1 FROM conversation_members cm
                       WHERE cm.conversation_id = m.conversation_id AND cm.user_id = ? AND m.seq >= cm.from_seq)
               OR EXISTS (SELECT 1 FROM conversation_departures cd
                          WHERE cd.conversation_id = m.conversation_id AND cd.user_id = ?
                            AND m.seq BETWEEN cd.from_seq AND cd.until_seq))
           ))`,
          [mediaId, userId, now, userId, userId],
        ),
      );
      return rows[0] ? toRecord(rows[0]) : null;
    });
  }

  markStored(mediaId: string, at: Date): Promise<boolean> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ media_id: string }>(
        await this.db.raw(`UPDATE media SET stored_at = ? WHERE media_id = ? AND sent_at IS NULL RETURNING media_id`, [at, mediaId]),
      );
      return rows.length > 0;
    });
  }

  /**
   * One statement: the rows leave `media` and enter `media_trash` together. A message
   * stored concurrently that refers to one of them holds its row (the foreign key): the
   * delete then fails whole and the next sweep tries again, so nothing referenced goes.
   */
  trashUnreferenced(unsentBefore: Date, limit: number): Promise<number> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ media_id: string }>(
        await this.db.raw(
          `WITH candidates AS (
             SELECT md.media_id FROM media md
             WHERE (md.sent_at IS NOT NULL OR md.created_at < ?)
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.media_id = md.media_id)
             LIMIT ?
           ), gone AS (
             DELETE FROM media WHERE media_id IN (SELECT media_id FROM candidates) RETURNING media_id
           )
           INSERT INTO media_trash (media_id, trashed_at) SELECT media_id, now() FROM gone
           ON CONFLICT (media_id) DO NOTHING RETURNING media_id`,
          [unsentBefore, limit],
        ),
      );
      return rows.length;
    });
  }

  trashed(limit: number): Promise<string[]> {
    return unavailableOnDbError(async () =>
      rowsOf<{ media_id: string }>(await this.db.raw(`SELECT media_id FROM media_trash ORDER BY trashed_at LIMIT ?`, [limit])).map(
        (r) => r.media_id,
      ),
    );
  }

  forget(mediaIds: string[]): Promise<void> {
    return unavailableOnDbError(async () => {
      await this.db.raw(`DELETE FROM media_trash WHERE media_id = ANY(?::uuid[])`, [mediaIds]);
    });
  }
}

/**
 * The key that signs the URLs Ticks serves itself, shared by every node through the
 * database: the first node to start makes it, the others read it. MEDIA_URL_SECRET, when
 * set, is used instead (and nothing is written).
 */
export async function mediaUrlKey(db: Knex, configured: string | null): Promise<Buffer> {
  if (configured !== null) return Buffer.from(configured, "utf8");
  await db.raw(`INSERT INTO media_url_keys (key_id, secret, created_at) VALUES (1, ?, now()) ON CONFLICT (key_id) DO NOTHING`, [
    randomBytes(32).toString("base64url"),
  ]);
  const rows = rowsOf<{ secret: string }>(await db.raw(`SELECT secret FROM media_url_keys WHERE key_id = 1`));
  return Buffer.from(rows[0]!.secret, "base64url");
}
