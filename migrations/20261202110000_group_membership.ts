import type { Knex } from "knex";

/**
 * Groups whose members come and go (docs/protocol.md, "Groups: members come and go").
 *
 * - `conversation_members` stays "who is in it now": every path that already reads it
 *   (delivery rows at insert, typing, sends) keeps its meaning. It gains `role` (admin or
 *   member) and `from_seq`, the first seq the member may see (0: from the start, as for a
 *   group's founding members and both sides of a direct conversation).
 * - `conversation_departures`: one row per user who left or was removed, with the window
 *   they keep (`from_seq` to `until_seq`, the entry that removed them). Adding them again
 *   moves them back to `conversation_members` with a new window; the old one is dropped.
 * - `conversations.members_version`: the seq of the last membership change. The append
 *   statement checks, under the conversation's row lock, that it is what its reads saw,
 *   so a send racing a removal is judged on the membership its seq falls under.
 * - `conversations_group_creator_idx`: counts a user's recent groups (GROUP_CREATE_PER_HOUR).
 * - `messages.group`: what a `kind: "group"` entry changed; NULL on every other kind.
 *
 * Constant defaults and a new nullable column are catalogue changes: no table rewrite.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("conversation_members", (t) => {
    t.string("role", 8).notNullable().defaultTo("member");
    t.bigInteger("from_seq").notNullable().defaultTo(0);
  });
  await knex.raw(`ALTER TABLE conversation_members ADD CONSTRAINT conversation_members_role_check
    CHECK (role IN ('admin', 'member'))`);
  // Every existing group's creator is its admin (as group:create makes them from now on).
  await knex.raw(`UPDATE conversation_members cm SET role = 'admin' FROM conversations c
    WHERE c.conversation_id = cm.conversation_id AND c.kind = 'group' AND cm.user_id = c.created_by`);

  await knex.schema.createTable("conversation_departures", (t) => {
    t.uuid("conversation_id").notNullable().references("conversation_id").inTable("conversations").onDelete("CASCADE");
    t.string("user_id", 64).notNullable();
    t.bigInteger("from_seq").notNullable();
    t.bigInteger("until_seq").notNullable();
    t.timestamp("left_at", { useTz: true }).notNullable();
    // The title when they left: renames after that are not theirs to see.
    t.string("title", 128).nullable();
    t.primary(["conversation_id", "user_id"]);
    // Serves conversation:list (a user's conversations, former ones included).
    t.index(["user_id"]);
  });

  await knex.schema.alterTable("conversations", (t) => {
    t.bigInteger("members_version").notNullable().defaultTo(0);
  });
  // Serves the per-user hourly cap on group creation (GROUP_CREATE_PER_HOUR).
  await knex.raw(`CREATE INDEX conversations_group_creator_idx ON conversations (created_by, created_at) WHERE kind = 'group'`);

  await knex.schema.alterTable("messages", (t) => {
    t.jsonb("group").nullable();
  });
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_kind_check`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'edit', 'delete', 'reaction', 'group')
      AND (kind IN ('text', 'group')) = (ref_id IS NULL)
      AND (kind = 'group') = ("group" IS NOT NULL))`);
}

export async function down(knex: Knex): Promise<void> {
  // Group entries have no meaning to a schema without them.
  await knex.raw(`DELETE FROM messages WHERE kind = 'group'`);
  await knex.raw(`ALTER TABLE messages DROP CONSTRAINT messages_kind_check`);
  await knex.raw(`ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'edit', 'delete', 'reaction') AND (kind = 'text') = (ref_id IS NULL))`);
  await knex.schema.alterTable("messages", (t) => t.dropColumn("group"));
  await knex.raw(`DROP INDEX conversations_group_creator_idx`);
  await knex.schema.alterTable("conversations", (t) => t.dropColumn("members_version"));
  await knex.schema.dropTable("conversation_departures");
  await knex.raw(`ALTER TABLE conversation_members DROP CONSTRAINT conversation_members_role_check`);
  await knex.schema.alterTable("conversation_members", (t) => t.dropColumns("role", "from_seq"));
}
