/**
 * The Ticks command-line client. Line-oriented on purpose: every event is one greppable
 * line on stdout, and commands come from stdin, so it works typed by hand, piped from a
 * script (`echo "send bob hi" | npm run client -- --user alice`) or driven by a test.
 *
 *   npm run client -- --user bob [--url http://localhost:3000] [--device laptop]
 *   npm run client -- --token <jwt>
 *   npm run client -- --token-command "my-idp-cli token --audience ticks"
 */
import { exec } from "node:child_process";
import { createInterface } from "node:readline";
import { Command } from "commander";
import { decodeJwt } from "jose";
import { v7 as uuidv7 } from "uuid";
import type { ClientEventName, Message, Status } from "../protocol";
import { Board, parseEntryCommand, type EntryCommand } from "./cliBoard";
import { TicksClient, type ReplyOf, type RequestOf } from "./TicksClient";

const USAGE =
  "usage: send <user> <text...> | edit <n> <text...> | delete <n> | react <n> [emoji] | read | history <user> | push register <pushkey> [appId] | push unregister <pushkey> | quit";
/** The app id `push register` uses unless given one; a gateway must know it (docs/push.md). */
const CLI_APP_ID = "ticks.cli";
/** The protocol's most ids per message:read. */
const READ_CHUNK = 500;
const HISTORY_LIMIT = 20;
const RANK: Record<Status, number> = { sent: 0, delivered: 1, read: 2 };

type Options = { user?: string; token?: string; tokenCommand?: string; url: string; device?: string };

function parseOptions(argv: string[]): Options {
  const program = new Command()
    .name("ticks-client")
    .description(`Ticks messaging client; reads commands from stdin (${USAGE})`)
    .option("--user <id>", "act as this user (server in AUTH_MODE=dev)")
    .option("--token <jwt>", "authenticate with this JWT")
    .option("--token-command <command>", "shell command printing a fresh JWT; run at each connect and before the token expires")
    .option("--url <url>", "server URL", "http://localhost:3000")
    .option("--device <id>", "name this device")
    .parse(argv);
  const options = program.opts<Options>();
  const given = [options.user, options.token, options.tokenCommand].filter((o) => o !== undefined);
  if (given.length !== 1) program.error("error: give exactly one of --user, --token or --token-command");
  return options;
}

/** Only for display and filtering: the server verifies the token, we just read `sub`. */
function subjectOf(token: string): string {
  try {
    return decodeJwt(token).sub ?? "?";
  } catch {
    return "?";
  }
}

/** Unauthorized handshakes in a row, each with a fresh token, before giving up. */
const TOKEN_ATTEMPTS = 3;

/** Runs the --token-command through the shell: its trimmed stdout is the token. */
function runTokenCommand(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    exec(command, { timeout: 30_000, maxBuffer: 64 * 1024 }, (err, stdout) => {
      if (err) return reject(new Error(`--token-command failed: ${err.message.trim()}`));
      const token = stdout.trim();
      if (!token) return reject(new Error("--token-command printed no token"));
      resolve(token);
    });
  });
}

/**
 * Keeps a token-command session authenticated: a fresh token at every (re)connect, an
 * `auth:refresh` on `auth:expiring`, a reconnect after the server's disconnect at `exp`, and
 * a few fresh tries after an `unauthorized` refusal. (The SDK's getToken() hook does the same.)
 */
function useTokenCommand(
  client: TicksClient,
  command: string,
  first: string,
  deviceId: string | undefined,
  giveUp: (reason: string) => void,
): void {
  const socket = client.socket;
  let next: string | null = first;
  const fresh = async (): Promise<string> => {
    const token = next ?? (await runTokenCommand(command));
    next = null;
    return token;
  };
  // socket.io-client calls this before every connection attempt, automatic reconnects included.
  socket.auth = (cb: (data: object) => void) => {
    fresh().then(
      (token) => cb({ token, ...(deviceId ? { deviceId } : {}) }),
      (err: Error) => {
        say(`error TOKEN: ${err.message}`);
        cb({ ...(deviceId ? { deviceId } : {}) }); // refused as unauthorized, and tried again below
      },
    );
  };
  socket.on("auth:expiring", ({ expiresAt }) => {
    say(`token expiring at ${expiresAt}`);
    void (async () => {
      try {
        const reply = await client.request("auth:refresh", { token: await runTokenCommand(command) });
        say(reply.ok ? `token refreshed (expires ${reply.expiresAt ?? "never"})` : `error ${reply.error.code}: ${reply.error.message}`);
      } catch (err) {
        say(`error TOKEN: ${(err as Error).message}`);
      }
    })();
  });
  socket.on("auth:expired", () => say("token expired"));
  socket.on("disconnect", (reason) => {
    // The server's disconnect (at exp) is not retried by Socket.IO: reconnect with a fresh token.
    if (reason === "io server disconnect") socket.connect();
  });
  // Refusals of the first connection are connectWithRetries' to handle; later ones here.
  let connectedOnce = false;
  let refusals = 0;
  socket.on("connect", () => {
    connectedOnce = true;
    refusals = 0;
  });
  socket.on("connect_error", (err) => {
    if (!connectedOnce || err.message !== "unauthorized" || socket.active) return;
    if (++refusals >= TOKEN_ATTEMPTS) return giveUp(err.message);
    setTimeout(() => socket.connect(), 500 * refusals);
  });
}

/** The first connection; with a token command an `unauthorized` is tried again with fresh tokens. */
async function connectWithRetries(client: TicksClient, attempts: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.connect();
    } catch (err) {
      if ((err as Error).message !== "unauthorized" || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
const blue = (text: string) => (colour ? `\x1b[34m${text}\x1b[0m` : text);
const say = (line: string) => void process.stdout.write(`${line}\n`);
const ticks = (status: Status) =>
  status === "sent" ? "✓ sent" : status === "delivered" ? "✓✓ delivered" : `${blue("✓✓")} read`;

/** Numbers and current state of the messages shown; `<n>` in edit/delete/react. */
const board = new Board();

async function main(): Promise<void> {
  const options = parseOptions(process.argv);
  let token = options.token;
  if (options.tokenCommand) {
    try {
      token = await runTokenCommand(options.tokenCommand);
    } catch (err) {
      process.stderr.write(`connect failed: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
  const me = options.user ?? subjectOf(token!);
  const client = new TicksClient(options.url, {
    ...(options.user ? { userId: options.user } : { token }),
    ...(options.device ? { deviceId: options.device } : {}),
  });
  if (options.tokenCommand) {
    useTokenCommand(client, options.tokenCommand, token!, options.device, (reason) => {
      process.stderr.write(`connect failed: ${reason}\n`);
      exit(1);
    });
  }
  const socket = client.socket;
  /** What we know of each message we sent: only ever moves forward. */
  const sent = new Map<string, Status>();
  const advance = (id: string, status: Status) => {
    const known = sent.get(id);
    if (!known || RANK[known] < RANK[status]) sent.set(id, status);
  };
  /** Received from others and not yet marked read, in arrival order. */
  const unread = new Set<string>();
  let quitting = false;
  const rl = createInterface({ input: process.stdin, terminal: false });
  // Iterate from the start: lines that arrive while the backlog drains are buffered, not lost.
  const lines = rl[Symbol.asyncIterator]();

  const exit = (code: number): void => {
    quitting = true;
    client.close();
    rl.close();
    // Let stdout drain first, so a reader of the pipe sees every line we wrote.
    process.stdout.write("", () => process.exit(code));
  };

  /** A missing acknowledgement is reported like a server error, so scripts see one shape. */
  async function ask<E extends ClientEventName>(event: E, payload: RequestOf<E>) {
    try {
      const reply = await client.request(event, payload);
      if (reply.ok) return reply as Extract<ReplyOf<E>, { ok: true }>;
      say(`error ${reply.error.code}: ${reply.error.message}`);
    } catch (err) {
      // Socket.IO's only rejection here is the timeout; anything else is a bug: let it crash.
      if (!/timed out/.test((err as Error).message)) throw err;
      say(`error TIMEOUT: no acknowledgement for ${event}`);
    }
    return undefined;
  }

  async function send(to: string, content: string): Promise<void> {
    const reply = await ask("message:send", { clientMsgId: uuidv7(), to, content });
    if (!reply) return;
    advance(reply.message.id, "sent");
    say(`✓ sent ${reply.message.id} to ${to} (#${board.remember(reply.message)})`);
  }

  /** Edit, delete or react to message #n; prints the message as it now stands. */
  async function act({ kind, n, text }: EntryCommand): Promise<void> {
    const messageId = board.idOf(n);
    if (!messageId) return say(`error: no message #${n} shown yet`);
    const clientMsgId = uuidv7();
    const reply =
      kind === "edit"
        ? await ask("message:edit", { clientMsgId, messageId, content: text })
        : kind === "delete"
          ? await ask("message:delete", { clientMsgId, messageId })
          : await ask("message:react", { clientMsgId, messageId, emoji: text });
    if (reply) showEntry(reply.message);
  }

  /** A text message shows as itself; an entry as the message it changed, changed. */
  function show(m: Message): void {
    if (m.kind !== "text") return showEntry(m);
    board.remember(m);
    say(board.line(m));
  }

  function showEntry(entry: Message): void {
    const applied = board.apply(entry);
    say(applied ? board.line(applied.message) : Board.unknown(entry));
  }

  async function markRead(): Promise<void> {
    const ids = [...unread];
    let updated = 0;
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      const chunk = ids.slice(i, i + READ_CHUNK);
      const reply = await ask("message:read", { messageIds: chunk });
      if (!reply) return; // the rest stay unread: `read` again retries them
      updated += reply.updated;
      for (const id of chunk) unread.delete(id);
    }
    say(`read ${updated}`);
  }

  async function history(user: string): Promise<void> {
    const list = await ask("conversation:list", {});
    if (!list) return;
    const conversation = list.conversations.find(
      (c) => c.kind === "direct" && user !== me && c.members.includes(user),
    );
    if (!conversation) return say(`history ${user}: no conversation`);
    const page = await ask("message:history", { conversationId: conversation.id, limit: HISTORY_LIMIT });
    if (!page) return;
    // Text messages come in their current state: the edits, deletes and reactions between them are already applied.
    const texts = page.messages.filter((m) => m.kind === "text");
    say(`history ${user}: ${texts.length} messages${page.hasMore ? " (older ones not shown)" : ""}`);
    for (const m of texts) {
      board.remember(m);
      // Ticks are ours to show only for what we sent, and only if we saw its state.
      const status = m.from === me ? sent.get(m.id) : undefined;
      say(`${board.line(m)}${status ? `  ${ticks(status)}` : ""}`);
    }
  }

  /** Registers this device for pushes, so a person can watch them arrive at a local gateway. */
  async function push(action: string, pushkey: string, appId = CLI_APP_ID): Promise<void> {
    if (action === "register") {
      if (await ask("push:register", { pushkey, appId })) say(`push registered ${pushkey} (${appId})`);
      return;
    }
    const reply = await ask("push:unregister", { pushkey });
    if (reply) say(`push unregistered ${pushkey} (${reply.removed} removed)`);
  }

  async function run(line: string): Promise<void> {
    const text = line.trim();
    const sendArgs = /^send\s+(\S+)\s+(.+)$/.exec(text);
    const historyArgs = /^history\s+(\S+)$/.exec(text);
    const pushArgs = /^push\s+register\s+(\S+)(?:\s+(\S+))?$/.exec(text) ?? /^push\s+(unregister)\s+(\S+)$/.exec(text);
    if (text === "") return;
    if (sendArgs) return send(sendArgs[1]!, sendArgs[2]!);
    const entry = parseEntryCommand(text);
    if (entry) return act(entry);
    if (text === "read") return markRead();
    if (historyArgs) return history(historyArgs[1]!);
    if (pushArgs) return pushArgs[1] === "unregister" ? push("unregister", pushArgs[2]!) : push("register", pushArgs[1]!, pushArgs[2]);
    if (text === "quit") return exit(0);
    say(USAGE);
  }

  client.onMessage((m) => {
    // Only text can be read: entries need no read receipt.
    if (m.from !== me && m.kind === "text") unread.add(m.id);
    show(m);
  });
  socket.on("message:status", (update) => {
    for (const id of update.messageIds) {
      advance(id, update.status);
      say(`${ticks(update.status)} ${id} by ${update.by}`);
    }
  });
  socket.on("connect", () => say(`connected as ${me}`));
  socket.on("disconnect", (reason) => {
    // Socket.IO reconnects by itself; the backlog then brings whatever was missed.
    if (!quitting) say(`disconnected: ${reason}`);
  });
  const synced = new Promise<void>((resolve) =>
    socket.on("sync:complete", ({ delivered }) => {
      say(`synced (${delivered} delivered)`);
      resolve();
    }),
  );

  try {
    await connectWithRetries(client, options.tokenCommand ? TOKEN_ATTEMPTS : 1);
  } catch (err) {
    process.stderr.write(`connect failed: ${(err as Error).message}\n`);
    return exit(1);
  }
  await synced;
  // One command at a time, in order: each waits for its acknowledgements before the next.
  for (let next = await lines.next(); !next.done && !quitting; next = await lines.next()) {
    await run(next.value);
  }
  if (!quitting) exit(0); // stdin ended: everything read has been done
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
