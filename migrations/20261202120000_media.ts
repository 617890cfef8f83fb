import type { Knex } from "knex";

/**
 * Media: photos, voice notes and files. The bytes live in a MediaStore (on disk or in an
 * S3 bucket); the database keeps what Ticks needs to sign URLs, check sends and decide
 * when the bytes may go.
 *
 * - `media`: one row per upload. `stored_at` is set once the bytes arrived (whole, of the
 *   announced size); `sent_at` once a message first carried it, in the statement that
 *   stores that message. An upload never sent goes 24 hours after `created_at`; one that
 *   was sent goes as soon as no message refers to it any more (deleted for everyone,
 *   expired).
 * - `messages.media_id`: the upload a message carries, NULL for most rows (partial index:
 *   text without media pays nothing for it). A foreign key without cascade: a row of
 *   `media` that a message refers to cannot be deleted, so the sweep can never take bytes
 *   a retained message still shows. `messages.media` is the message's `media` object as
 *   clients get it (mime, size, name, width, height, durationMs, thumbnail), kept on the
 *   row so every read hands it out without a join. A delete for everyone sets both NULL.
 * - `media_trash`: uploads whose row is gone and whose bytes are still to be removed from
 *   the store. The sweep moves rows here in the statement that deletes them, then removes
 *   the bytes, then the trash rows: bytes are never removed while a row could still be
 *   referred to, and a failed removal is retried by the next sweep.
 * - `media_url_keys`: the HMAC key that signs the URLs Ticks serves itself (the disk
 *   store), made by the first node that starts, so every node of a cluster (they share
 *   the database) accepts a URL made by any other. MEDIA_URL_SECRET replaces it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("media", (t) => {
    t.uuid("media_id").primary();
    t.string("owner_id", 64).notNullable();
    t.string("mime", 127).notNullable();
    t.bigInteger("size").notNullable();
    t.string("name", 255).nullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("stored_at", { useTz: true }).nullable();
    t.timestamp("sent_at", { useTz: true }).nullable();
  });
  await knex.raw(`ALTER TABLE media ADD CONSTRAINT media_size_check CHECK (size > 0)`);
  // The sweep's two questions: which unsent uploads are old, which sent ones lost their last message.
  await knex.raw(`CREATE INDEX media_unsent_idx ON media (created_at) WHERE sent_at IS NULL`);
  await knex.raw(`CREATE INDEX media_sent_idx ON media (sent_at) WHERE sent_at IS NOT NULL`);

  await knex.schema.alterTable("messages", (t) => {
    t.uuid("media_id").nullable().references("media_id").inTable("media");
    t.jsonb("media").nullable();
  });
  await knex.raw(`CREATE INDEX messages_media_id_idx ON messages (media_id) WHERE media_id IS NOT NULL`);

  await knex.schema.createTable("media_trash", (t) => {
    t.uuid("media_id").primary();
    t.timestamp("trashed_at", { useTz: true }).notNullable();
  });

  await knex.schema.createTable("media_url_keys", (t) => {
    t.smallint("key_id").primary();
    t.string("secret", 128).notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("media_url_keys");
  await knex.schema.dropTable("media_trash");
  await knex.raw(`DROP INDEX messages_media_id_idx`);
  await knex.schema.alterTable("messages", (t) => {
    t.dropForeign(["media_id"]);
    t.dropColumns("media_id", "media");
  });
  await knex.schema.dropTable("media");
}
