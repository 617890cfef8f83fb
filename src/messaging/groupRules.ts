/**
 * The rules of group membership, as one pure function. The store applies it inside the
 * transaction that holds the conversation's row lock, to the members as committed at that
 * moment, so two admins acting at once are judged one after the other (in seq order).
 */
import { AppError, type GroupChange, type GroupRole } from "../protocol";
import { noSuchConversation, notAMember } from "./routing";

/** One member as the store sees it; `joinedAt` orders succession (longest-standing first). */
export type GroupMember = { userId: string; role: GroupRole; joinedAt: Date };

export type GroupState = { kind: string; members: GroupMember[] };

export type GroupCommand =
  | { action: "add"; userIds: readonly string[] }
  | { action: "remove"; userId: string }
  | { action: "leave" }
  | { action: "title"; title: string }
  | { action: "role"; userId: string; role: GroupRole };

/** What one accepted change does: the entry's `group` field, and the rows it moves. */
export type GroupPlan = {
  change: GroupChange;
  added: string[];
  removed: string[];
  roles: { userId: string; role: GroupRole }[];
  title: string | null;
  /** Who gets the entry: the members after the change plus whoever it removed, but the actor. */
  recipients: string[];
};

export type GroupVerdict = { ok: true; plan: GroupPlan } | { ok: false; error: AppError };

const refuse = (code: "FORBIDDEN" | "BAD_REQUEST", message: string): GroupVerdict => ({
  ok: false,
  error: new AppError(code, message),
});

export function judgeGroupChange(
  actor: string,
  command: GroupCommand,
  group: GroupState | undefined,
  maxMembers: number,
): GroupVerdict {
  if (!group) return { ok: false, error: noSuchConversation() };
  if (group.kind !== "group") return refuse("FORBIDDEN", "a direct conversation has no members to change");
  const byId = new Map(group.members.map((m) => [m.userId, m]));
  const me = byId.get(actor);
  if (!me) return { ok: false, error: notAMember() };
  if (command.action === "leave" || (command.action === "remove" && command.userId === actor)) {
    return accept(actor, group, { action: "leave", userIds: [actor], removed: [actor] });
  }
  if (me.role !== "admin") return refuse("FORBIDDEN", "only a group admin can do that");
  switch (command.action) {
    case "add": {
      const added = [...new Set(command.userIds)].filter((u) => !byId.has(u));
      if (added.length === 0) return refuse("BAD_REQUEST", "every user named is already a member");
      if (group.members.length + added.length > maxMembers) {
        return refuse("BAD_REQUEST", `a group has at most ${maxMembers} members: nobody was added`);
      }
      return accept(actor, group, { action: "add", userIds: added, added });
    }
    case "remove":
      if (!byId.has(command.userId)) return refuse("BAD_REQUEST", "userId is not a member of this group");
      return accept(actor, group, { action: "remove", userIds: [command.userId], removed: [command.userId] });
    case "title":
      return accept(actor, group, { action: "title", userIds: [], title: command.title });
    case "role": {
      const target = byId.get(command.userId);
      if (!target) return refuse("BAD_REQUEST", "userId is not a member of this group");
      if (target.role === command.role) return refuse("BAD_REQUEST", `${command.userId} already is ${command.role === "admin" ? "an admin" : "a member"}`);
      const admins = group.members.filter((m) => m.role === "admin");
      if (command.role === "member" && admins.length === 1) {
        return refuse("FORBIDDEN", "the last admin cannot stop being admin: make someone else admin first");
      }
      return accept(actor, group, {
        action: "role",
        userIds: [command.userId],
        role: command.role,
        roles: [{ userId: command.userId, role: command.role }],
      });
    }
  }
}

type Draft = {
  action: GroupChange["action"];
  userIds: string[];
  added?: string[];
  removed?: string[];
  roles?: { userId: string; role: GroupRole }[];
  title?: string;
  role?: GroupRole;
};

function accept(actor: string, group: GroupState, d: Draft): GroupVerdict {
  const removed = new Set(d.removed ?? []);
  const remaining = group.members.filter((m) => !removed.has(m.userId));
  const userIds = [...d.userIds];
  const roles = [...(d.roles ?? [])];
  let role = d.role ?? null;
  // The last admin left: the longest-standing remaining member takes over (named second).
  if (d.action === "leave" && remaining.length > 0 && !remaining.some((m) => m.role === "admin")) {
    const successor = succession(remaining)[0]!;
    userIds.push(successor.userId);
    roles.push({ userId: successor.userId, role: "admin" });
    role = "admin";
  }
  const recipients = [...remaining.map((m) => m.userId), ...(d.added ?? []), ...removed].filter((u) => u !== actor);
  return {
    ok: true,
    plan: {
      change: { action: d.action, userIds, title: d.title ?? null, role },
      added: d.added ?? [],
      removed: [...removed],
      roles,
      title: d.title ?? null,
      recipients: [...new Set(recipients)],
    },
  };
}

/** Longest-standing first; the same instant falls back to the user id, so every node agrees. */
export function succession(members: GroupMember[]): GroupMember[] {
  return [...members].sort(
    (a, b) => a.joinedAt.getTime() - b.joinedAt.getTime() || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0),
  );
}
