/**
 * The web chat page: plain DOM on top of the SDK bundle the server serves. Every piece of
 * user content goes through textContent, never innerHTML, so a message is only ever text.
 */
import { setUpGroupControls } from "./groups";
import {
  describeGroupChange,
  IndexedDbOutboxStorage,
  MemoryOutboxStorage,
  TicksClient,
  subjectOf,
  type ChatMessage,
  type ConversationSummary,
  type LocalMessage,
  type MessageStatus,
} from "/sdk/ticks-client.js";
import { describeFile, mediaElement } from "./media";

type SendLocal = Extract<LocalMessage, { event: "message:send" }>;
type PageConfig = { authMode: "jwt" | "dev"; maxContentLength: number };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const signin = $<HTMLFormElement>("signin");
const credential = $<HTMLInputElement>("credential");
const connection = $<HTMLSpanElement>("connection");
const chat = $<HTMLElement>("chat");
const conversationList = $<HTMLUListElement>("conversations");
const messageList = $<HTMLUListElement>("messages");
const typingLine = $<HTMLParagraphElement>("typing");
const composer = $<HTMLFormElement>("composer");
const toField = $<HTMLInputElement>("to");
const messageField = $<HTMLInputElement>("message");
const attach = $<HTMLInputElement>("attach");
const notice = $<HTMLParagraphElement>("notice");
const membership = $<HTMLParagraphElement>("membership");
const sendButton = composer.querySelector<HTMLButtonElement>("button[type=submit]")!;

const TICK: Record<MessageStatus, string> = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };

let client: TicksClient | undefined;
const presence = new Map<string, boolean>();
/** Statuses of this user's messages by server id, and failures by clientMsgId. */
const statuses = new Map<string, MessageStatus>();
const failures = new Map<string, string>();
const typingNow = new Map<string, Set<string>>();
/** Users whose presence this page follows. */
const watched = new Set<string>();

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** The other person in a direct chat, or the group's title. */
function nameOf(c: ConversationSummary): string {
  if (c.kind === "group") return c.title ?? "group";
  return c.members.find((m) => m !== client?.me) ?? client?.me ?? "?";
}

const peer = () => toField.value.trim();
/** The open group, by id (a group has no peer to find it by); unset for direct chats. */
let selectedGroup: string | undefined;
const currentConversation = (): ConversationSummary | undefined =>
  selectedGroup ? client?.conversation(selectedGroup) : peer() ? client?.directWith(peer()) : undefined;
const openGroup = () => {
  const c = currentConversation();
  return c?.kind === "group" ? c : undefined;
};
const groupControls = setUpGroupControls({
  client: () => client,
  openGroup,
  select: (id) => {
    selectedGroup = id;
    toField.value = client?.conversation(id)?.title ?? "group";
    void openConversation();
  },
  notice: (text) => (notice.textContent = text),
});

/** What the chat list showed last: rebuilt only when it changes. */
let shownList = "";

function renderConversations(): void {
  if (!client) return;
  const current = currentConversation()?.id;
  // Rebuilding the list between a click's mousedown and mouseup loses the click (leaving
  // "To" commits it, and that re-rendered the list under the pointer): same list, same nodes.
  const shown = JSON.stringify([
    current,
    client.hasMoreConversations,
    client.conversations().map((c) => [c.id, nameOf(c), c.unread, presence.get(nameOf(c))]),
  ]);
  if (shown === shownList) return;
  shownList = shown;
  conversationList.replaceChildren(
    ...client.conversations().map((c) => {
      const name = nameOf(c);
      const button = el("button");
      button.type = "button";
      button.setAttribute("aria-current", String(c.id === current));
      const label = el("span", name);
      const online = c.kind === "direct" ? presence.get(name) : undefined;
      const dot = el("span", online === undefined ? "" : online ? " online" : " offline", `presence${online ? " online" : ""}`);
      label.append(dot);
      button.append(label);
      if (c.unread > 0) {
        const badge = el("span", String(c.unread), "badge");
        badge.setAttribute("aria-label", `${c.unread} unread`);
        button.append(badge);
      }
      button.addEventListener("click", () => {
        selectedGroup = c.kind === "group" ? c.id : undefined;
        toField.value = name;
        void openConversation();
      });
      return el("li").appendChild(button).parentElement!;
    }),
  );
  // The SDK holds the most recent chats; older ones come a page at a time.
  if (client.hasMoreConversations) {
    const more = el("button", "More chats");
    more.type = "button";
    more.addEventListener("click", () => void client?.loadMoreConversations().then(renderConversations, (err: Error) => (notice.textContent = err.message)));
    conversationList.append(el("li").appendChild(more).parentElement!);
  }
}

function statusElement(status: MessageStatus, reason?: string): HTMLElement {
  const tick = el("span", TICK[status], `tick ${status}`);
  tick.setAttribute("aria-label", status);
  if (reason) tick.title = reason;
  return tick;
}

function messageItem(m: ChatMessage | SendLocal, status?: MessageStatus, reason?: string): HTMLLIElement {
  // A membership or title change: one line across the chat ("alice added carol").
  if ("kind" in m && m.kind === "group") return el("li", describeGroupChange(m, (u) => (u === client?.me ? "you" : u)), "system");
  const mine = m.from === client?.me;
  const li = el("li", undefined, mine ? "mine" : "theirs");
  const deleted = "deletedAt" in m && m.deletedAt;
  // Stored: the media it carries. Still in the outbox: its upload, named.
  const media = "kind" in m && !deleted ? m.media : null;
  const uploading = "event" in m && m.media ? `📎 ${m.upload?.name ?? "file"}${m.upload ? " (uploading…)" : ""}` : null;
  if (media && client) li.append(mediaElement(client, media));
  if (uploading) li.append(el("span", uploading, "upload"));
  if (deleted || m.content || !(media || uploading)) li.append(el("span", deleted ? "message deleted" : m.content, "text"));
  const time = new Date(m.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.append(el("span", `${"editedAt" in m && m.editedAt ? "edited " : ""}${time}`, "meta"));
  if (mine && status) li.append(statusElement(status, reason));
  const reactions = "reactions" in m ? (m.reactions ?? []) : [];
  if (reactions.length) li.append(el("span", reactions.map((r) => `${r.emoji} ${r.userIds.length}`).join(" "), "reactions"));
  return li;
}

function renderMessages(): void {
  if (!client) return;
  const atBottom = messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 40;
  const conversation = currentConversation();
  const held = conversation ? client.messages(conversation.id) : [];
  const items = held.map((m) => messageItem(m, statuses.get(m.id) ?? client!.statusOf(m.id) ?? "sent"));
  for (const p of client.pending()) {
    if (p.event !== "message:send") continue;
    if (p.to === peer() || (conversation && p.conversationId === conversation.id)) items.push(messageItem(p, "pending"));
  }
  for (const [clientMsgId, reason] of failures) {
    const f = failed.get(clientMsgId);
    if (f && f.to === peer()) items.push(messageItem(f, "failed", reason));
  }
  messageList.replaceChildren(...items);
  if (atBottom) messageList.scrollTop = messageList.scrollHeight;
  const typists = conversation ? [...(typingNow.get(conversation.id) ?? [])] : [];
  typingLine.textContent = typists.length ? `${typists.join(", ")} ${typists.length > 1 ? "are" : "is"} typing…` : "";
  // Removed from (or left) the open group: it stays readable, but nothing can be sent to it.
  const gone = conversation?.kind === "group" && conversation.member === false;
  membership.textContent = gone ? "You are no longer a member of this group: you can't send messages to it." : "";
  messageField.disabled = gone;
  sendButton.disabled = gone;
  attach.disabled = gone;
  groupControls.render();
}

const failed = new Map<string, SendLocal>();

/** Where the composer sends: the open conversation, or the peer named in "To" before one exists. */
const sendTarget = () => {
  const conversation = currentConversation();
  return conversation ? { conversationId: conversation.id } : { to: peer() };
};
/** The message field's text, taken for a send or a caption: the field empties and the peer stops seeing "typing…". */
const takeText = () => {
  const text = messageField.value;
  messageField.value = "";
  const conversation = currentConversation();
  if (conversation) client?.stopTyping(conversation.id);
  return text;
};
/** A send the outbox holds: kept for showing if it fails, and shown now. */
const queued = (local: LocalMessage) => {
  failed.set(local.clientMsgId, local as SendLocal);
  renderMessages();
};

let readTimer: ReturnType<typeof setTimeout> | undefined;
/** Reading is what the user sees: mark the open conversation read while the page is visible. */
function markOpenConversationRead(): void {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const c = currentConversation();
    if (client && c && c.unread > 0 && document.visibilityState === "visible") void client.markRead(c.id).catch(() => undefined);
  }, 100);
}

async function openConversation(): Promise<void> {
  renderConversations();
  renderMessages();
  // A chat older than those the SDK holds: ask the server for it by its peer.
  if (client && !selectedGroup && peer() && !currentConversation()) {
    const asked = peer();
    const found = await client.findDirect(asked).catch(() => undefined);
    if (found && peer() === asked) renderConversations();
  }
  const c = currentConversation();
  if (client && c) {
    if (client.messages(c.id).length === 0) await client.loadOlder(c.id).catch(() => undefined);
    messageList.scrollTop = messageList.scrollHeight;
    renderMessages();
    markOpenConversationRead();
  }
}

async function start(config: PageConfig, value: string): Promise<void> {
  client?.close();
  const dev = config.authMode === "dev";
  // One outbox per user: a token names its user in `sub`.
  const user = dev ? value : subjectOf(value);
  let storage;
  try {
    storage = new IndexedDbOutboxStorage(`ticks-outbox-${user ?? "token"}`);
  } catch {
    storage = new MemoryOutboxStorage();
  }
  const c = new TicksClient({
    url: location.origin,
    ...(dev ? { userId: value } : { getToken: () => value }),
    storage,
    maxContentLength: config.maxContentLength,
  });
  client = c;
  c.on("connected", () => (connection.textContent = `Connected as ${c.me}`));
  c.on("disconnected", () => (connection.textContent = "Offline: reconnecting…"));
  c.on("synced", () => {
    connection.textContent = `Connected as ${c.me}`;
    const peers = c.conversations().filter((x) => x.kind === "direct").map(nameOf);
    peers.forEach((p) => watched.add(p));
    if (peers.length) void c.subscribePresence(peers.slice(0, 500)).then((list) => list.forEach((p) => presence.set(p.userId, p.online)), () => undefined).then(renderConversations);
    // The chat named in "To" may have been typed before this device knew it: open it now
    // (renders, loads its newest page if nothing is held, marks it read).
    void openConversation();
  });
  c.on("message", (m) => {
    if (currentConversation()?.id === m.conversationId) {
      renderMessages();
      if (m.from !== c.me) markOpenConversationRead();
    }
  });
  c.on("updated", renderMessages);
  c.on("conversation", (summary) => {
    if (summary.id === currentConversation()?.id) renderMessages();
    // A chat that appeared after sign-in: follow its peer's presence too.
    const name = nameOf(summary);
    if (c.synced && summary.kind === "direct" && !watched.has(name)) {
      watched.add(name);
      void c.subscribePresence([name]).then((list) => list.forEach((p) => presence.set(p.userId, p.online)), () => undefined).then(renderConversations);
    }
    renderConversations();
  });
  c.on("status", (change) => {
    if (change.messageId && change.status !== "failed" && change.status !== "pending") statuses.set(change.messageId, change.status);
    // Kept only until stored: what failed is shown from here, with its reason.
    if (change.status === "sent" && change.clientMsgId) failed.delete(change.clientMsgId);
    if (change.status === "failed" && change.clientMsgId) {
      failures.set(change.clientMsgId, `${change.error?.code}: ${change.error?.message}`);
      notice.textContent = `Not sent: ${change.error?.message ?? "refused"}`;
    }
    renderMessages();
  });
  c.on("typing", ({ conversationId, userId, typing }) => {
    const set = typingNow.get(conversationId) ?? new Set<string>();
    if (typing) set.add(userId);
    else set.delete(userId);
    typingNow.set(conversationId, set);
    renderMessages();
  });
  c.on("presence", (p) => {
    presence.set(p.userId, p.online);
    renderConversations();
  });
  connection.textContent = "Connecting…";
  try {
    await c.connect();
    chat.hidden = false;
  } catch (err) {
    connection.textContent = `Connect failed: ${(err as Error).message}`;
  }
}

async function main(): Promise<void> {
  const config = (await (await fetch("/app/config.json")).json()) as PageConfig;
  if (config.authMode === "jwt") {
    $("credential-label").textContent = "Token";
    credential.autocomplete = "off";
  }
  signin.addEventListener("submit", (event) => {
    event.preventDefault();
    void start(config, credential.value.trim());
  });
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!client || !peer() || !messageField.value) return;
    notice.textContent = "";
    const text = takeText();
    // Shown (🕓) once the outbox's IndexedDB holds it: from then on closing the tab keeps it.
    client.send(sendTarget(), text).then(
      (local) => {
        queued(local);
        messageList.scrollTop = messageList.scrollHeight;
      },
      (err: Error) => {
        notice.textContent = err.message;
        if (!messageField.value) messageField.value = text; // not queued: give the text back
      },
    );
  });
  // Attach: the picked file goes at once, the message field's text as its caption.
  attach.addEventListener("change", () => {
    const file = attach.files?.[0];
    if (!client || !peer() || !file) return;
    const target = sendTarget();
    const caption = takeText();
    attach.value = notice.textContent = "";
    describeFile(file, caption)
      .then((options) => client!.sendMedia(target, file, options))
      .then(queued, (err: Error) => (notice.textContent = err.message));
  });
  messageField.addEventListener("input", () => {
    const conversation = currentConversation();
    if (client && conversation && messageField.value) client.typing(conversation.id);
  });
  // Typing a name opens that chat: "change" alone fires only on Enter, Tab or leaving the
  // field, and someone who types the peer and waits never sends it (a fresh device's empty chat).
  let openTimer: ReturnType<typeof setTimeout> | undefined;
  toField.addEventListener("input", () => {
    clearTimeout(openTimer);
    openTimer = setTimeout(() => {
      selectedGroup = undefined;
      void openConversation();
    }, 150);
  });
  toField.addEventListener("change", () => {
    selectedGroup = undefined;
    void openConversation();
  });
  messageList.addEventListener("scroll", () => {
    const c = currentConversation();
    if (!client || !c || messageList.scrollTop > 0) return;
    const before = messageList.scrollHeight;
    void client.loadOlder(c.id).then(({ messages }) => {
      if (messages.length === 0) return;
      renderMessages();
      messageList.scrollTop = messageList.scrollHeight - before;
    });
  });
  document.addEventListener("visibilitychange", markOpenConversationRead);
}

void main();
