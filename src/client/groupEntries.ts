/**
 * Group entries (`kind: "group"`) as the SDK applies and shows them: the change to the
 * conversation's summary (members, admins, title, whether this user is still a member),
 * and the line a chat renders for it ("alice added carol").
 */
import type { ConversationSummary, GroupChange } from "../protocol/events";
import type { ChatMessage } from "./entries";

const sorted = (ids: Iterable<string>) => [...new Set(ids)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
const without = (ids: string[], gone: string[]) => ids.filter((id) => !gone.includes(id));

/** `summary` as the entry leaves it; `me` is this user. The summary passed in is not changed. */
export function applyGroupChange(summary: ConversationSummary, change: GroupChange, me: string | undefined): ConversationSummary {
  const next = { ...summary, members: [...summary.members], admins: [...(summary.admins ?? [])] };
  const gone = (ids: string[]) => {
    next.members = without(next.members, ids);
    next.admins = without(next.admins, ids);
    if (me !== undefined && ids.includes(me)) Object.assign(next, { member: false, members: [], admins: [] });
  };
  switch (change.action) {
    case "add":
      next.members = sorted([...next.members, ...change.userIds]);
      if (me !== undefined && change.userIds.includes(me)) next.member = true;
      break;
    case "remove":
      gone(change.userIds);
      break;
    case "leave":
      gone(change.userIds.slice(0, 1));
      // The last admin left: the successor, named second, is admin now.
      if (change.role === "admin" && change.userIds[1] && next.member !== false) next.admins = sorted([...next.admins, change.userIds[1]]);
      break;
    case "title":
      next.title = change.title;
      break;
    case "role":
      next.admins = change.role === "admin" ? sorted([...next.admins, ...change.userIds]) : without(next.admins, change.userIds);
      break;
  }
  return next;
}

/** "alice added carol and dave", "bob left", "alice renamed the group to Friday". `name` shows a user id (default: as is). */
export function describeGroupChange(m: Pick<ChatMessage, "from"> & { group?: GroupChange | null }, name: (userId: string) => string = (u) => u): string {
  const change = m.group;
  if (!change) return "";
  const who = name(m.from);
  const list = (ids: string[]) => {
    const names = ids.map(name);
    return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
  };
  switch (change.action) {
    case "add":
      return `${who} added ${list(change.userIds)}`;
    case "remove":
      return `${who} removed ${list(change.userIds)}`;
    case "leave":
      return change.role === "admin" && change.userIds[1] ? `${who} left; ${name(change.userIds[1])} is now an admin` : `${who} left`;
    case "title":
      return `${who} renamed the group to ${change.title ?? ""}`;
    case "role":
      return change.role === "admin" ? `${who} made ${list(change.userIds)} an admin` : `${who} made ${list(change.userIds)} a member`;
  }
}
