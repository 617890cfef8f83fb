/**
 * The web page's group controls: create a group, add and remove members, leave. Each form
 * is named by its labels and buttons (the page's accessible contract); refusals show in
 * the page's notice, as the server worded them.
 */
import type { ConversationSummary, TicksClient } from "/sdk/ticks-client.js";

type GroupPage = {
  client: () => TicksClient | undefined;
  /** The open conversation, if it is a group. */
  openGroup: () => ConversationSummary | undefined;
  /** Opens a conversation by id (after creating it). */
  select: (conversationId: string) => void;
  notice: (text: string) => void;
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export function setUpGroupControls(page: GroupPage): { render(): void } {
  const create = $<HTMLFormElement>("new-group");
  const title = $<HTMLInputElement>("group-title");
  const members = $<HTMLInputElement>("group-members");
  const manage = $<HTMLFormElement>("manage-group");
  const member = $<HTMLInputElement>("member-id");
  const leave = $<HTMLButtonElement>("leave-group");

  const run = (work: (client: TicksClient) => Promise<unknown>, done: () => void) => {
    const client = page.client();
    if (!client) return;
    page.notice("");
    work(client).then(done, (err: Error) => page.notice(err.message));
  };

  create.addEventListener("submit", (event) => {
    event.preventDefault();
    const ids = members.value.split(/[\s,]+/).filter(Boolean);
    run(
      async (client) => page.select(await client.createGroup(title.value.trim(), ids)),
      () => {
        title.value = "";
        members.value = "";
      },
    );
  });
  manage.addEventListener("submit", (event) => {
    event.preventDefault();
    const group = page.openGroup();
    const userId = member.value.trim();
    const action = ((event as SubmitEvent).submitter as HTMLButtonElement | null)?.value;
    if (!group || !userId) return;
    run(
      (client) => (action === "remove" ? client.removeMember(group.id, userId) : client.addMembers(group.id, [userId])),
      () => (member.value = ""),
    );
  });
  leave.addEventListener("click", () => {
    const group = page.openGroup();
    if (group) run((client) => client.leave(group.id), () => undefined);
  });

  return {
    /** Managing shows only for an open group the user is still in. */
    render() {
      const group = page.openGroup();
      manage.hidden = !group || group.member === false;
    },
  };
}
