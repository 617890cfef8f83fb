import type { Knex } from "knex";

/**
 * The status stream: every `message:status` a user's devices are sent is also a row here,
 * so a device that was away when a tick moved reads it later with `status:sync`.
 *
 * - `status_stream`: one row per change of one message as its owner's devices are told:
 *   a recipient's delivered/read of the owner's message (`by_user` the recipient), and the
 *   owner's own read of a message they received (`by_user` the owner). `pos` is a position
 *   in the owner's stream: the receipt statement takes it while holding a per-owner lock
 *   (storage/receipts.ts), so within one owner's stream `pos` follows commit order and a
 *   cursor never jumps over a change that commits later.
 *   The primary key (owner_id, pos) is what a `status:sync` page reads: one index range
 *   scan, and never the owner's messages.
 *   `expires_at` is the message's: the expiry sweep deletes these rows with their message
 *   (a BRIN index, as for messages: rows arrive roughly in expiry order, and it costs
 *   nothing on most inserts; a foreign key with ON DELETE CASCADE would need a B-tree on
 *   message_id written by every receipt).
 * - `server_secrets`: keys the server keeps for itself, shared by every node through the
 *   database. `status_cursor` seals the stream's cursors (messaging/StatusCursors.ts), so
 *   a cursor is opaque, cannot be made up, and is bound to the user it was given to.
 *   gen_random_uuid() draws from the server's strong random source: two of them give 244
 *   random bits.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE status_stream (
    owner_id varchar(64) NOT NULL,
    pos bigint GENERATED ALWAYS AS IDENTITY,
    message_id uuid NOT NULL,
    status varchar(10) NOT NULL CHECK (status IN ('delivered', 'read')),
    by_user varchar(64) NOT NULL,
    at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner_id, pos)
  )`);
  await knex.raw(`CREATE INDEX status_stream_expires_at_brin ON status_stream USING brin (expires_at) WITH (autosummarize = on)`);
  await knex.raw(`CREATE TABLE server_secrets (name varchar(64) PRIMARY KEY, secret bytea NOT NULL)`);
  await knex.raw(`INSERT INTO server_secrets (name, secret)
    VALUES ('status_cursor', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE server_secrets`);
  await knex.raw(`DROP TABLE status_stream`);
}
