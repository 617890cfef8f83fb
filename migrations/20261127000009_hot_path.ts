import type { Knex } from "knex";

/**
 * What the send path pays for on every message, cut where it does not pay for itself
 * (measured with bench/explain.ts; see docs/benchmarks.md):
 *
 * - The foreign key messages → conversations ran one lookup (and a row lock) per inserted
 *   message. The append statement already locks each message's conversation row FOR UPDATE
 *   before it inserts, so the row is known to exist, and conversations are never deleted.
 *   (message_delivery → messages stays: its ON DELETE CASCADE is how the expiry sweep takes
 *   delivery rows, and what hangs off them, along.)
 * - The B-tree on messages.expires_at took one more index insert per message for a query
 *   that runs once a sweep interval. expires_at grows with insertion order (created_at plus
 *   a fixed TTL), which is what a BRIN index is for: a few pages for millions of rows, and
 *   nothing to update on most inserts.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_foreign`);
  await knex.raw(`DROP INDEX messages_expires_at_index`);
  await knex.raw(`CREATE INDEX messages_expires_at_brin ON messages USING brin (expires_at) WITH (autosummarize = on)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX messages_expires_at_brin`);
  await knex.raw(`CREATE INDEX messages_expires_at_index ON messages (expires_at)`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_foreign
    FOREIGN KEY (conversation_id) REFERENCES conversations (conversation_id)`);
}
