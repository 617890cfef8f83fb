/**
 * The CLI's group commands (`group create|add|remove|leave|rename`), each one line in and
 * one line out, like every other command. A group is named by its conversation id or its
 * title (when no other group of yours has it).
 */
import type { Message } from "../protocol";
import { describeGroupChange } from "./groupEntries";
import type { TicksClient } from "./TicksClient";

export const GROUP_USAGE =
  'group create <title|"a title"> <user...> | group add <group> <user...> | group remove <group> <user> | group leave <group> | group rename <group> <title...>';

/** How a group entry prints: `group <title>: alice added carol`. */
export function groupLine(client: TicksClient, m: Message): string {
  const title = client.conversation(m.conversationId)?.title ?? m.conversationId;
  return `group ${title}: ${describeGroupChange(m)}`;
}

function findGroup(client: TicksClient, name: string): string | null {
  const groups = client.conversations().filter((c) => c.kind === "group");
  const byId = groups.find((c) => c.id === name);
  if (byId) return byId.id;
  const byTitle = groups.filter((c) => c.title === name);
  return byTitle.length === 1 ? byTitle[0]!.id : null;
}

/**
 * Runs `line` if it is a group command and resolves true (its outcome printed with `say`);
 * false if it is not one. Server refusals are thrown (ServerError), as for other commands.
 */
export async function runGroupCommand(client: TicksClient, line: string, say: (line: string) => void): Promise<boolean> {
  const create = /^group\s+create\s+(?:"([^"]+)"|(\S+))\s+(.+)$/.exec(line);
  if (create) {
    const title = create[1] ?? create[2]!;
    const id = await client.createGroup(title, create[3]!.split(/\s+/));
    say(`group created ${id} ${title}`);
    return true;
  }
  const change = /^group\s+(add|remove|leave|rename)\s+(?:"([^"]+)"|(\S+))(?:\s+(.+))?$/.exec(line);
  if (!change) return false;
  const [, action, quoted, bare, rest] = change;
  const id = findGroup(client, quoted ?? bare!);
  if (!id) {
    say(`error: no group ${quoted ?? bare} (give its id, or a title only one of your groups has)`);
    return true;
  }
  const args = rest?.trim() ?? "";
  if (action !== "leave" && args === "") return false;
  const entry =
    action === "add"
      ? await client.addMembers(id, args.split(/\s+/))
      : action === "remove"
        ? await client.removeMember(id, args)
        : action === "rename"
          ? await client.rename(id, args)
          : await client.leave(id);
  say(groupLine(client, entry));
  return true;
}
