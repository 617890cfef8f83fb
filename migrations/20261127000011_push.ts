import type { Knex } from "knex";

/**
 * Push notifications: the devices registered for pushes, and the durable outbox of pushes
 * not yet handed to the gateway.
 *
 * `push_outbox` rows are written in the same statement as the message they are about
 * (storage/appendBatch.ts), so a stored message can never miss its push. Each row belongs
 * to one delivery row (message, recipient) and goes with it: the expiry sweep, which
 * deletes messages and their delivery rows, takes the pending pushes along.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("pushkeys", (t) => {
    // A pushkey names one app install on one phone: unique, so registering it again moves it.
    t.string("pushkey", 512).primary();
    t.string("user_id", 64).notNullable();
    t.string("app_id", 64).notNullable();
    t.string("device_id", 64).nullable();
    t.timestamp("registered_at", { useTz: true }).notNullable();
    // Serves "does this recipient have pushkeys" in the write path and the devices of a push.
    t.index(["user_id"]);
  });

  await knex.schema.createTable("push_outbox", (t) => {
    t.uuid("message_id").notNullable();
    t.string("recipient_id", 64).notNullable();
    // When the next attempt is due. A worker that claims the row moves it forward by a lease,
    // so no other node takes it while the POST is in flight, and another node does if the
    // claiming one dies.
    t.timestamp("due_at", { useTz: true }).notNullable();
    // The first due time: retries stop PUSH_RETRY_FOR_MS after it.
    t.timestamp("first_due_at", { useTz: true }).notNullable();
    t.integer("attempts").notNullable().defaultTo(0);
    t.primary(["message_id", "recipient_id"]);
    t.foreign(["message_id", "recipient_id"])
      .references(["message_id", "recipient_id"])
      .inTable("message_delivery")
      .onDelete("CASCADE");
    t.index(["due_at"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("push_outbox");
  await knex.schema.dropTable("pushkeys");
}
