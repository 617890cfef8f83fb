import type { Knex } from "knex";
import type { GroupChangeRequest, GroupChangeResult, GroupStore } from "../messaging/groupPorts";
import { judgeGroupChange, type GroupMember } from "../messaging/groupRules";
import { AppError, type ConversationSummary, type GroupRole, type Message } from "../protocol";
import { UNIQUE_VIOLATION, unavailableOnDbError } from "./unavailable";
import { forgetGoneOriginals } from "./append/reads";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";

type Locked = { kind: string; title: string | null; last_seq: string | number };
type MemberRow = { user_id: string; role: GroupRole; joined_at: Date | string; from_seq: string | number };

/**
 * Membership changes, one transaction each. The conversation row is locked first (FOR
 * UPDATE): the append statement locks it too to hand out seq, so a change and the sends
 * around it are ordered by the one lock, and every statement after the lock reads the
 * members as the previous holder committed them (READ COMMITTED takes a new snapshot per
 * statement). Database failures surface as StorageUnavailableError (UNAVAILABLE).
 */
export class SqlGroupStore implements GroupStore {
  constructor(private readonly db: Knex) {}

  async change(req: GroupChangeRequest): Promise<GroupChangeResult> {
    try {
      return await unavailableOnDbError(() => this.db.transaction((trx) => this.changeIn(trx, req)));
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code !== UNIQUE_VIOLATION) throw err;
      // A concurrent retry of the same change committed first: answer its entry.
      const original = await unavailableOnDbError(() => findStored(this.db, req));
      if (original) return { duplicate: true, message: original };
      // The key names an entry that went with a partition dropped by hand: forget it, store this one.
      await unavailableOnDbError(() => forgetGoneOriginals(this.db, [req]));
      return await unavailableOnDbError(() => this.db.transaction((trx) => this.changeIn(trx, req)));
    }
  }

  private async changeIn(trx: Knex.Transaction, req: GroupChangeRequest): Promise<GroupChangeResult> {
    const [conversation] = rowsOf<Locked>(
      await trx.raw(`SELECT kind, title, last_seq FROM conversations WHERE conversation_id = ? FOR UPDATE`, [req.conversationId]),
    );
    // A retry is answered before it is judged: after a leave, its retry is no member's.
    const original = await findStored(trx, req);
    if (original) return { duplicate: true, message: original };
    const members = conversation
      ? rowsOf<MemberRow>(
          await trx.raw(`SELECT user_id, role, joined_at, from_seq FROM conversation_members WHERE conversation_id = ?`, [
            req.conversationId,
          ]),
        )
      : [];
    const verdict = judgeGroupChange(
      req.from,
      req.command,
      conversation && {
        kind: conversation.kind,
        members: members.map((m): GroupMember => ({ userId: m.user_id, role: m.role, joinedAt: new Date(m.joined_at) })),
      },
      req.maxMembers,
    );
    if (!verdict.ok) throw verdict.error;
    const { plan } = verdict;
    const seq = toNumber(conversation!.last_seq) + 1;
    const membershipMoved = plan.added.length > 0 || plan.removed.length > 0;
    await trx.raw(
      `UPDATE conversations SET last_seq = ?, title = COALESCE(?, title),
         members_version = CASE WHEN ? THEN ? ELSE members_version END
       WHERE conversation_id = ?`,
      [seq, plan.title, membershipMoved, seq, req.conversationId],
    );
    if (plan.removed.length > 0) {
      // They keep their window: from where they could first see, to this entry.
      await trx.raw(
        `WITH gone AS (
           DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ANY(?::text[])
           RETURNING conversation_id, user_id, from_seq
         )
         INSERT INTO conversation_departures (conversation_id, user_id, from_seq, until_seq, left_at, title)
         SELECT conversation_id, user_id, from_seq, ?, ?, ? FROM gone ORDER BY user_id
         ON CONFLICT (conversation_id, user_id) DO UPDATE
           SET from_seq = excluded.from_seq, until_seq = excluded.until_seq, left_at = excluded.left_at, title = excluded.title`,
        [req.conversationId, plan.removed, seq, req.createdAt, conversation!.title],
      );
    }
    if (plan.added.length > 0) {
      const added = [...plan.added].sort();
      await trx.raw(`INSERT INTO users (user_id) SELECT unnest(?::text[]) ON CONFLICT (user_id) DO NOTHING`, [added]);
      // Seen from this entry on; an earlier window of theirs is not given back.
      await trx.raw(
        `INSERT INTO conversation_members (conversation_id, user_id, joined_at, role, from_seq)
         SELECT ?, u, ?, 'member', ? FROM unnest(?::text[]) AS u`,
        [req.conversationId, req.createdAt, seq, added],
      );
      await trx.raw(`DELETE FROM conversation_departures WHERE conversation_id = ? AND user_id = ANY(?::text[])`, [
        req.conversationId,
        added,
      ]);
    }
    if (plan.roles.length > 0) {
      await trx.raw(
        `UPDATE conversation_members cm SET role = v.role
         FROM unnest(?::text[], ?::text[]) AS v(user_id, role)
         WHERE cm.conversation_id = ? AND cm.user_id = v.user_id`,
        [plan.roles.map((r) => r.userId), plan.roles.map((r) => r.role), req.conversationId],
      );
    }
    const message: Message = {
      id: req.id,
      clientMsgId: req.clientMsgId,
      conversationId: req.conversationId,
      seq,
      from: req.from,
      to: null,
      content: "",
      createdAt: req.createdAt.toISOString(),
      expiresAt: req.expiresAt.toISOString(),
      kind: "group",
      refId: null,
      editedAt: null,
      deletedAt: null,
      reactions: [],
      group: plan.change,
      media: null,
    };
    await trx.raw(
      `INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
         created_at, expires_at, kind, "group")
       VALUES (?, ?, ?, ?, NULL, ?, '', ?, ?, 'group', ?::jsonb)`,
      [req.id, req.conversationId, seq, req.from, req.clientMsgId, req.createdAt, req.expiresAt, JSON.stringify(plan.change)],
    );
    // The global idempotency key: a concurrent retry of this change fails here (UNIQUE_VIOLATION).
    await trx.raw(
      `INSERT INTO message_idempotency (from_user_id, client_msg_id, message_id, expires_at) VALUES (?, ?, ?, ?)`,
      [req.from, req.clientMsgId, req.id, req.expiresAt],
    );
    const recipients = [...plan.recipients].sort();
    if (recipients.length > 0) {
      await trx.raw(
        `INSERT INTO message_delivery (message_id, recipient_id, status) SELECT ?, unnest(?::text[]), 'sent'`,
        [req.id, recipients],
      );
    }
    const summary = plan.added.length > 0 ? await joinedView(trx, req.conversationId, seq) : null;
    return { duplicate: false, message, recipients, added: plan.added, summary };
  }
}

async function findStored(q: Knex | Knex.Transaction, req: { from: string; clientMsgId: string }): Promise<Message | null> {
  const [row] = rowsOf<MessageRow>(
    await q.raw(
      `SELECT ${MESSAGE_COLUMNS} FROM message_idempotency k JOIN messages m ON m.message_id = k.message_id
       WHERE k.from_user_id = ? AND k.client_msg_id = ?`,
      [
        req.from,
        req.clientMsgId,
      ],
    ),
  );
  return row ? toMessage(row) : null;
}

/**
 * The group as a user added by the entry at `seq` sees it: everything before is not
 * theirs, so no unread text and no last message yet.
 */
async function joinedView(trx: Knex.Transaction, conversationId: string, seq: number): Promise<ConversationSummary> {
  const [row] = rowsOf<{ title: string | null; members: string[] | null; admins: string[] | null }>(
    await trx.raw(
      `SELECT c.title,
         (SELECT array_agg(user_id ORDER BY user_id) FROM conversation_members WHERE conversation_id = c.conversation_id) AS members,
         (SELECT array_agg(user_id ORDER BY user_id) FROM conversation_members
           WHERE conversation_id = c.conversation_id AND role = 'admin') AS admins
       FROM conversations c WHERE c.conversation_id = ?`,
      [conversationId],
    ),
  );
  if (!row) throw new AppError("NOT_FOUND", "no such conversation");
  return {
    id: conversationId,
    kind: "group",
    title: row.title,
    members: row.members ?? [],
    admins: row.admins ?? [],
    member: true,
    lastSeq: seq,
    unread: 0,
    lastMessage: null,
  };
}
