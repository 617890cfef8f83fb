import type { Knex } from "knex";

/**
 * Edits, deletes and reactions are entries of the conversation's log, stored in `messages`
 * like text (own id, clientMsgId, seq, delivery rows), so they are delivered, receipted,
 * paged, de-duplicated and expired by the code that already does that for text.
 *
 * - `kind`: what the row is; every row that existed before is a text message.
 * - `ref_id`: the text message an entry acts on (NULL for text). ON DELETE CASCADE: when a
 *   text message is swept, its entries go with it (they also share its expires_at).
 * - `edited_at`, `deleted_at`, `reactions`: a text message's current state, kept on its
 *   own row so every read (history, backlog, redelivery, conversation list) hands it out
 *   without a join. `reactions` is `{ "<userId>": "<emoji>" }`: one reaction per user.
 *
 * Adding columns with constant defaults is a catalogue change in PostgreSQL ≥ 11: no
 * table rewrite, however many rows there are.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("messages", (t) => {
    t.string("kind", 8).notNullable().defaultTo("text");
    t.uuid("ref_id").nullable().references("message_id").inTable("messages").onDelete("CASCADE");
    t.timestamp("edited_at", { useTz: true }).nullable();
    t.timestamp("deleted_at", { useTz: true }).nullable();
    t.jsonb("reactions").notNullable().defaultTo(knex.raw("'{}'::jsonb"));
  });
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'edit', 'delete', 'reaction') AND (kind = 'text') = (ref_id IS NULL))`);
  // Serves a delete erasing its message's entries, the cascade when a message is swept,
  // and finding the first delete entry. Partial: text rows (most rows) are not in it, so a
  // text insert pays nothing for it.
  await knex.raw(`CREATE INDEX messages_ref_id_idx ON messages (ref_id) WHERE ref_id IS NOT NULL`);
}

export async function down(knex: Knex): Promise<void> {
  // Entries have no meaning to a schema without them.
  await knex.raw(`DELETE FROM messages WHERE kind <> 'text'`);
  await knex.raw(`DROP INDEX messages_ref_id_idx`);
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_kind_check`);
  await knex.schema.alterTable("messages", (t) => {
    t.dropForeign(["ref_id"]);
    t.dropColumns("kind", "ref_id", "edited_at", "deleted_at", "reactions");
  });
}
