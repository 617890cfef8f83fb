import type { Knex } from "knex";
import type { Status } from "../protocol";
import type { RecipientInfo, StatusStreamStore, StreamRow } from "../messaging/statusPorts";
import { runPrepared, statement } from "./prepared";
import { rowsOf, toDate as date } from "./rows";
import { unavailableOnDbError } from "./unavailable";

/**
 * A page of one user's status stream: a range of the primary key (owner_id, pos), read in
 * index order, so the LIMIT stops the scan; nothing else is read (docs/benchmarks.md has
 * its plan at 5 M messages). Rows of an expired message not yet swept are skipped.
 */
export const STATUS_PAGE = statement(
  "status_page",
  `SELECT s.pos::text AS position, s.message_id, s.status, s.by_user, s.at FROM status_stream s
   WHERE s.owner_id = $1 AND s.pos > $2 AND s.expires_at > $3
   ORDER BY s.pos LIMIT $4`,
);

/** The sender's message and its delivery rows; no row at all when it is not theirs, unknown or expired. */
const RECIPIENTS_SQL = `SELECT d.recipient_id, d.status, d.delivered_at, d.read_at FROM messages m
   LEFT JOIN message_delivery d ON d.message_id = m.message_id
   WHERE m.message_id = ? AND m.from_user_id = ? AND m.expires_at > ?
   ORDER BY d.recipient_id`;

type PageRow = { position: string; message_id: string; status: "delivered" | "read"; by_user: string; at: Date | string };
type RecipientRow = { recipient_id: string | null; status: Status; delivered_at: Date | string | null; read_at: Date | string | null };

/** The status stream in PostgreSQL or PGlite (migrations/20261202100000_status_stream.ts). */
export class SqlStatusStream implements StatusStreamStore {
  constructor(
    private readonly db: Knex,
    /** Where the page statement runs as a named prepared statement. @default db */
    private readonly hot: Knex = db,
  ) {}

  page(owner: string, afterPos: string | null, limit: number, now: Date): Promise<StreamRow[]> {
    return unavailableOnDbError(async () => {
      const rows = await runPrepared<PageRow>(this.hot, STATUS_PAGE, [owner, afterPos ?? "0", now.toISOString(), limit]);
      return rows.map((r) => ({ pos: r.position, messageId: r.message_id, status: r.status, by: r.by_user, at: date(r.at) }));
    });
  }

  recipients(sender: string, messageId: string, now: Date): Promise<RecipientInfo[] | null> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<RecipientRow>(await this.db.raw(RECIPIENTS_SQL, [messageId, sender, now]));
      if (rows.length === 0) return null;
      return rows.flatMap((r) =>
        r.recipient_id === null
          ? []
          : [{ userId: r.recipient_id, status: r.status, deliveredAt: r.delivered_at ? date(r.delivered_at) : null, readAt: r.read_at ? date(r.read_at) : null }],
      );
    });
  }

  /** Any `limit` expired rows, found through the BRIN index on expires_at (as messages are). */
  deleteExpired(now: Date, limit: number): Promise<number> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ pos: unknown }>(
        await this.db.raw(
          `DELETE FROM status_stream WHERE (owner_id, pos) IN (
             SELECT owner_id, pos FROM status_stream WHERE expires_at <= ? LIMIT ?
           ) RETURNING pos`,
          [now, limit],
        ),
      );
      return rows.length;
    });
  }

  cursorKey(): Promise<Uint8Array> {
    return unavailableOnDbError(async () => {
      const rows = rowsOf<{ secret: Uint8Array }>(await this.db.raw(`SELECT secret FROM server_secrets WHERE name = 'status_cursor'`));
      if (!rows[0]) throw new Error("server_secrets has no status_cursor key: run the migrations");
      return new Uint8Array(rows[0].secret);
    });
  }
}
