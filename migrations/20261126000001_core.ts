import type { Knex } from "knex";

/**
 * The core schema. Table and column names are the ones operators already query (users,
 * messages, message_delivery); conversations and their members carry direct chats and
 * groups alike, and the per-conversation seq counter.
 *
 * User ids are not foreign keys: `users` is the directory of everyone who connected or was
 * written to, filled on the side, so a send never waits on it or fails because of it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("users", (t) => {
    t.string("user_id", 64).primary();
    t.string("username", 128).nullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("last_seen", { useTz: true }).nullable();
  });

  await knex.schema.createTable("conversations", (t) => {
    t.uuid("conversation_id").primary();
    t.string("kind", 8).notNullable();
    t.string("title", 128).nullable();
    // "alice bob" (sorted, space cannot occur in a user id): one direct chat per pair.
    t.string("direct_key", 130).nullable().unique();
    // The last seq handed out; the row lock on it is what makes seq gap-free.
    t.bigInteger("last_seq").notNullable().defaultTo(0);
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("last_message_at", { useTz: true }).nullable();
    t.string("created_by", 64).nullable();
  });
  await knex.raw(`ALTER TABLE conversations ADD CONSTRAINT conversations_kind_check
    CHECK (kind IN ('direct', 'group') AND (kind = 'group') = (direct_key IS NULL))`);

  await knex.schema.createTable("conversation_members", (t) => {
    t.uuid("conversation_id").notNullable().references("conversation_id").inTable("conversations").onDelete("CASCADE");
    t.string("user_id", 64).notNullable();
    t.timestamp("joined_at", { useTz: true }).notNullable();
    t.primary(["conversation_id", "user_id"]);
    t.index(["user_id"]);
  });

  await knex.schema.createTable("messages", (t) => {
    t.uuid("message_id").primary();
    t.uuid("conversation_id").notNullable().references("conversation_id").inTable("conversations");
    t.bigInteger("seq").notNullable();
    t.string("from_user_id", 64).notNullable();
    t.string("to_user_id", 64).nullable();
    t.string("client_msg_id", 64).notNullable();
    t.text("content").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("expires_at", { useTz: true }).notNullable();
    t.unique(["from_user_id", "client_msg_id"]);
    t.unique(["conversation_id", "seq"]);
    t.index(["expires_at"]);
  });

  await knex.schema.createTable("message_delivery", (t) => {
    t.uuid("message_id").notNullable().references("message_id").inTable("messages").onDelete("CASCADE");
    t.string("recipient_id", 64).notNullable();
    t.string("status", 10).notNullable().defaultTo("sent");
    t.timestamp("delivered_at", { useTz: true }).nullable();
    t.timestamp("read_at", { useTz: true }).nullable();
    t.primary(["message_id", "recipient_id"]);
  });
  // Taken while the conversation row is locked, so within a conversation it follows seq:
  // the backlog is ordered by it ("oldest first", seq order per conversation).
  await knex.raw(`ALTER TABLE message_delivery ADD COLUMN delivery_id bigint GENERATED ALWAYS AS IDENTITY`);
  await knex.raw(`ALTER TABLE message_delivery ADD CONSTRAINT message_delivery_status_check
    CHECK (status IN ('sent', 'delivered', 'read'))`);
  // Serves the backlog (status = 'sent' ORDER BY delivery_id), unread counts and the
  // operators' "count(*) WHERE recipient_id = ? AND status = 'sent'".
  await knex.raw(`CREATE INDEX message_delivery_recipient_status_idx
    ON message_delivery (recipient_id, status, delivery_id)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("message_delivery");
  await knex.schema.dropTable("messages");
  await knex.schema.dropTable("conversation_members");
  await knex.schema.dropTable("conversations");
  await knex.schema.dropTable("users");
}
