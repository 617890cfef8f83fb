/**
 * The Ticks command-line client, built on the SDK (TicksClient). Line-oriented on purpose:
 * every event is one greppable line on stdout, and commands come from stdin, so it works
 * typed by hand, piped from a script (`echo "send bob hi" | npm run client -- --user alice`)
 * or driven by a test.
 *
 *   npm run client -- --user bob [--url http://localhost:3000] [--device laptop]
 *   npm run client -- --token <jwt>
 *   npm run client -- --token-command "my-idp-cli token --audience ticks"
 */
import { exec } from "node:child_process";
import { createInterface } from "node:readline";
import { Command } from "commander";
import type { Message, Status } from "../protocol";
import { Board, parseEntryCommand, type EntryCommand } from "./cliBoard";
import { saveMedia, sendFile } from "./cliMedia";
import { GROUP_USAGE, groupLine, runGroupCommand } from "./cliGroups";
import { ContentTooLargeError } from "./limits";
import { ServerError } from "./request";
import type { StatusChange } from "./StatusTracker";
import { TicksClient } from "./TicksClient";

const USAGE =
  "usage: send <user> <text...> | send-file <user> <path> [caption...] | save <n> <path> | edit <n> <text...> | delete <n> | react <n> [emoji] | read | history <user> | " +
  `push register <pushkey> [appId] | push unregister <pushkey> | ${GROUP_USAGE} | quit`;
/** The app id `push register` uses unless given one; a gateway must know it (docs/push.md). */
const CLI_APP_ID = "ticks.cli";
const HISTORY_LIMIT = 20;

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

/** Unauthorized first handshakes, each with a fresh token, before giving up (--token-command). */
const TOKEN_ATTEMPTS = 3;

class TokenCommandError extends Error {}

/** Runs the --token-command through the shell: its trimmed stdout is the token. */
function runTokenCommand(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    exec(command, { timeout: 30_000, maxBuffer: 64 * 1024 }, (err, stdout) => {
      if (err) return reject(new TokenCommandError(`--token-command failed: ${err.message.trim()}`));
      const token = stdout.trim();
      if (!token) return reject(new TokenCommandError("--token-command printed no token"));
      resolve(token);
    });
  });
}

const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
const blue = (text: string) => (colour ? `\x1b[34m${text}\x1b[0m` : text);
const say = (line: string) => void process.stdout.write(`${line}\n`);
const ticks = (status: Status) =>
  status === "sent" ? "✓ sent" : status === "delivered" ? "✓✓ delivered" : `${blue("✓✓")} read`;

/** Numbers and current state of the messages shown; `<n>` in edit/delete/react (cliBoard.ts). */
const board = new Board();

async function main(): Promise<void> {
  const options = parseOptions(process.argv);
  const command = options.tokenCommand;
  // With a token command the SDK asks for a fresh token at every connect and before expiry.
  const client = new TicksClient({
    url: options.url,
    ...(options.user ? { userId: options.user } : command ? { getToken: () => runTokenCommand(command) } : { token: options.token }),
    ...(options.device ? { deviceId: options.device } : {}),
  });
  const me = () => client.me ?? "?";
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

  /** A server error is one line, so scripts see one shape; anything else is a bug: let it crash. */
  async function attempt(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      if (err instanceof ServerError || err instanceof ContentTooLargeError) return say(`error ${err.code}: ${err.message}`);
      if ((err as Error).name === "RequestTimeout") return say(`error TIMEOUT: ${(err as Error).message}`);
      if ((err as Error).name === "MediaFileError") return say(`error FILE: ${(err as Error).message}`);
      throw err;
    }
  }

  /** Waits for the outbox to settle this send: stored (sent) or refused for good (failed). */
  function settled(clientMsgId: string): Promise<StatusChange> {
    return new Promise((resolve) => {
      const off = client.on("status", (change) => {
        if (change.clientMsgId !== clientMsgId || change.status === "pending") return;
        off();
        resolve(change);
      });
    });
  }

  async function send(to: string, content: string, file?: string): Promise<void> {
    // Resolves before any status can follow: the server's answer comes by I/O, later.
    const local = file === undefined ? await client.send({ to }, content) : await sendFile(client, to, file, content);
    const outcome = await settled(local.clientMsgId);
    if (outcome.status === "failed") return say(`error ${outcome.error!.code}: ${outcome.error!.message}`);
    say(`✓ sent ${outcome.messageId} to ${to} (#${board.remember(outcome.message!)})`);
  }

  async function save(n: number, file: string): Promise<void> {
    const media = board.messageOf(n)?.media;
    if (!media) return say(`error: message #${n} carries no file`);
    say(`✓ saved #${n} to ${file} (${await saveMedia(client, media, file)} bytes)`);
  }

  /** Edit, delete or react to message #n (through the outbox); prints the message as it now stands. */
  async function act({ kind, n, text }: EntryCommand): Promise<void> {
    const messageId = board.idOf(n);
    if (!messageId) return say(`error: no message #${n} shown yet`);
    const local = await (kind === "edit" ? client.edit(messageId, text) : kind === "delete" ? client.delete(messageId) : client.react(messageId, text));
    const outcome = await settled(local.clientMsgId);
    if (outcome.status === "failed") return say(`error ${outcome.error!.code}: ${outcome.error!.message}`);
    showEntry(outcome.message!);
  }

  /** A text message shows as itself; an entry as the message it changed, changed. */
  function show(m: Message): void {
    if (m.kind === "group") return say(groupLine(client, m));
    if (m.kind !== "text") return showEntry(m);
    board.remember(m);
    say(board.line(m));
  }

  function showEntry(entry: Message): void {
    const applied = board.apply(entry);
    say(applied ? board.line(applied.message) : Board.unknown(entry));
  }

  async function markRead(): Promise<void> {
    let updated = 0;
    for (const c of client.conversations()) if (c.unread > 0) updated += await client.markRead(c.id);
    say(`read ${updated}`);
  }

  async function history(user: string): Promise<void> {
    const { conversations } = await client.call("conversation:list", {});
    const conversation = conversations.find((c) => c.kind === "direct" && user !== me() && c.members.includes(user));
    if (!conversation) return say(`history ${user}: no conversation`);
    const page = await client.call("message:history", { conversationId: conversation.id, limit: HISTORY_LIMIT });
    // Text messages come in their current state: the edits, deletes and reactions between them are already applied.
    const texts = page.messages.filter((m) => m.kind === "text");
    say(`history ${user}: ${texts.length} messages${page.hasMore ? " (older ones not shown)" : ""}`);
    for (const m of texts) {
      board.remember(m);
      // Ticks are ours to show only for what we sent, and only if we saw its state.
      const status = m.from === me() ? client.statusOf(m.id) : undefined;
      say(`${board.line(m)}${status ? `  ${ticks(status)}` : ""}`);
    }
  }

  /** Registers this device for pushes, so a person can watch them arrive at a local gateway. */
  async function push(action: string, pushkey: string, appId = CLI_APP_ID): Promise<void> {
    if (action === "register") {
      await client.call("push:register", { pushkey, appId });
      return say(`push registered ${pushkey} (${appId})`);
    }
    const reply = await client.call("push:unregister", { pushkey });
    say(`push unregistered ${pushkey} (${reply.removed} removed)`);
  }

  async function run(line: string): Promise<void> {
    const text = line.trim();
    const sendArgs = /^send\s+(\S+)\s+(.+)$/.exec(text);
    const historyArgs = /^history\s+(\S+)$/.exec(text);
    if (text === "") return;
    if (sendArgs) return attempt(() => send(sendArgs[1]!, sendArgs[2]!));
    const fileArgs = /^send-file\s+(\S+)\s+(\S+)(?:\s+(.+))?$/.exec(text);
    if (fileArgs) return attempt(() => send(fileArgs[1]!, fileArgs[3] ?? "", fileArgs[2]!));
    const saveArgs = /^save\s+(\d+)\s+(\S+)$/.exec(text);
    if (saveArgs) return attempt(() => save(Number(saveArgs[1]), saveArgs[2]!));
    if (text === "read") return attempt(markRead);
    if (historyArgs) return attempt(() => history(historyArgs[1]!));
    const entry = parseEntryCommand(text);
    if (entry) return attempt(() => act(entry));
    const pushArgs = /^push\s+register\s+(\S+)(?:\s+(\S+))?$/.exec(text) ?? /^push\s+(unregister)\s+(\S+)$/.exec(text);
    if (pushArgs) {
      return attempt(() => (pushArgs[1] === "unregister" ? push("unregister", pushArgs[2]!) : push("register", pushArgs[1]!, pushArgs[2])));
    }
    if (text === "quit") return exit(0);
    if (/^group\s/.test(text)) return attempt(async () => void ((await runGroupCommand(client, text, say)) || say(USAGE)));
    say(USAGE);
  }

  client.on("message", (m, source) => {
    // Our own sends are answered by their "✓ sent" line; history is only context.
    if (source === "sent" || source === "history") return;
    show(m);
  });
  client.on("status", (change) => {
    // A receipt names who confirmed it; the same status repeated with our ack (a receipt that
    // beat the ack home) names nobody and was already printed.
    if ((change.status === "delivered" || change.status === "read") && change.messageId && change.by) {
      say(`${ticks(change.status)} ${change.messageId} by ${change.by}`);
    }
  });
  client.on("connected", () => say(`connected as ${me()}`));
  client.on("disconnected", (reason) => {
    // The SDK reconnects by itself; the backlog and the catch-up then bring whatever was missed.
    if (!quitting) say(`disconnected: ${reason}`);
  });
  client.on("expiring", ({ expiresAt }) => say(`token expiring at ${expiresAt}`));
  client.on("token", ({ expiresAt }) => say(`token refreshed (expires ${expiresAt ?? "never"})`));
  client.on("expired", () => say("token expired"));
  client.on("error", (err) => {
    if (err instanceof ServerError) return say(`error ${err.code}: ${err.message}`);
    if (err instanceof TokenCommandError) return say(`error TOKEN: ${err.message}`);
    process.stderr.write(`warning: ${err.message}\n`);
  });
  const synced = new Promise<void>((resolve) =>
    client.on("synced", ({ delivered }) => {
      say(`synced (${delivered} delivered)`);
      resolve();
    }),
  );

  let connected = false;
  /** The first connection: null once connected, or why not (a refusal, or no server there). */
  const connectOnce = () =>
    new Promise<Error | null>((resolve) => {
      // Never connected at all (no server there): say so instead of retrying forever.
      const off = client.on("connect_error", (err) => {
        if (connected) return;
        off();
        resolve(err);
      });
      client.connect().then(
        () => {
          off();
          resolve(null);
        },
        (err: Error) => {
          off();
          resolve(err);
        },
      );
    });
  let outcome = await connectOnce();
  // A token command may print a token the server refuses (expired, not yet valid): try fresh ones.
  for (let attempt = 2; command && outcome?.message === "unauthorized" && attempt <= TOKEN_ATTEMPTS; attempt++) {
    await new Promise((r) => setTimeout(r, 500 * (attempt - 1)));
    outcome = await connectOnce();
  }
  if (outcome) {
    process.stderr.write(`connect failed: ${outcome.message}\n`);
    return exit(1);
  }
  connected = true;
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
