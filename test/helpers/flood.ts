/**
 * The flood driver of the fault suite: a population of failover clients spread over the
 * nodes, a plan of messages, and senders that go through it with per-message bookkeeping
 * (what every reply said). The accounting against the database is ./accounting.
 */
import { uniqueId } from "./ids";
import { FailoverRecipient, FailoverSender } from "./failover";
import { sleep } from "./wait";

// Where the fault cases have always found them.
export { FailoverRecipient, FailoverSender, type FailoverOptions, type SendReply } from "./failover";
export { collectFigures, printFigures, settle, type Figures } from "./accounting";
export { LogWatch } from "./logWatch";
export { sleep } from "./wait";

export type Intent = {
  sender: number;
  from: string;
  clientMsgId: string;
  to: string;
  content: string;
  /** Message ids of every ok reply (more than one would be two stored messages). */
  okIds: Set<string>;
  okReplies: number;
  /** When the first ok arrived (ms since epoch). */
  ackedAt?: number;
  duplicateReplies: number;
  unavailable: number;
  rateLimited: number;
  /** Error codes other than UNAVAILABLE / RATE_LIMITED: the message is given up. */
  errors: string[];
  done: boolean;
};

export type FloodStats = {
  intents: Intent[];
  acked: number;
  unavailable: number;
  rateLimited: number;
  duplicateReplies: number;
  otherErrors: number;
  startedAt: number;
  finishedAt: number | null;
};

/** A message still to send: nothing answered yet. */
export function newIntent(message: Pick<Intent, "sender" | "from" | "clientMsgId" | "to" | "content">): Intent {
  return {
    ...message,
    okIds: new Set(),
    okReplies: 0,
    duplicateReplies: 0,
    unavailable: 0,
    rateLimited: 0,
    errors: [],
    done: false,
  };
}

/** Counters at zero for `intents`; `finishedAt` stays null until the flood is over. */
export function newFloodStats(intents: Intent[], startedAt = Date.now()): FloodStats {
  return {
    intents,
    acked: 0,
    unavailable: 0,
    rateLimited: 0,
    duplicateReplies: 0,
    otherErrors: 0,
    startedAt,
    finishedAt: null,
  };
}

/**
 * The population of a flood: `recipients` devices and `senders`, spread over the nodes at
 * `urls`. All are added to `closeAtEnd` before any connects, so a failed start still leaves
 * nothing open. Resolves once every recipient had its first sync:complete (nothing it gets
 * later is backlog from before the flood) and every sender is connected.
 */
export async function startFloodClients(
  urls: string[],
  counts: { senders: number; recipients: number },
  closeAtEnd: { close(): void }[],
  options: {
    auth?: (userId: string) => Promise<Record<string, unknown>>;
    /** The senders' socket.io-client ackTimeout. @default 2000 */
    ackTimeoutMs?: number;
  } = {},
): Promise<{ senders: FailoverSender[]; recipients: FailoverRecipient[] }> {
  const authOf = async (userId: string) => (options.auth ? { auth: await options.auth(userId) } : {});
  const recipientIds = Array.from({ length: counts.recipients }, (_, i) => uniqueId(`r${i}`));
  const senderIds = Array.from({ length: counts.senders }, (_, i) => uniqueId(`s${i}`));
  const recipientAuth = await Promise.all(recipientIds.map(authOf));
  const senderAuth = await Promise.all(senderIds.map(authOf));
  const recipients = spread(counts.recipients, (i, start) => new FailoverRecipient(urls, recipientIds[i]!, start, recipientAuth[i]), urls.length);
  const senders = spread(
    counts.senders,
    (i, start) => new FailoverSender(urls, senderIds[i]!, start, { retries: 10, ackTimeout: options.ackTimeoutMs ?? 2000, ...senderAuth[i] }),
    urls.length,
  );
  closeAtEnd.push(...recipients, ...senders);
  await Promise.all(recipients.map((r) => r.startSynced()));
  await Promise.all(senders.map((s) => s.start()));
  return { senders, recipients };
}

/** Every sender sends `perSender` messages, round-robin over the recipients. */
export function planFlood(senders: FailoverSender[], recipients: string[], perSender: number, tag: string): Intent[] {
  const intents: Intent[] = [];
  senders.forEach((s, i) => {
    for (let k = 0; k < perSender; k++) {
      intents.push(
        newIntent({
          sender: i,
          from: s.userId,
          clientMsgId: `${tag}-${i}-${k}`,
          to: recipients[(i * 7 + k) % recipients.length]!,
          content: `${tag} #${k} from ${s.userId}`,
        }),
      );
    }
  });
  return intents;
}

/**
 * Runs every sender through its messages, one at a time: an UNAVAILABLE (or RATE_LIMITED)
 * answer is retried with the same clientMsgId after `retryDelayMs`. Resolves when every
 * sender is done or `deadlineMs` passed (then the senders are left as they are).
 */
export function startFlood(
  senders: FailoverSender[],
  intents: Intent[],
  options: { retryDelayMs?: number } = {},
): { stats: FloodStats; done: Promise<void> } {
  const stats = newFloodStats(intents);
  const retryDelayMs = options.retryDelayMs ?? 200;
  const runSender = async (index: number) => {
    const sender = senders[index]!;
    for (const intent of intents) {
      if (intent.sender !== index) continue;
      while (!intent.done) {
        const reply = await sender.send({ clientMsgId: intent.clientMsgId, to: intent.to, content: intent.content });
        if (reply === null) return; // closed
        if (reply.ok) {
          if (intent.okReplies === 0) {
            stats.acked++;
            intent.ackedAt = Date.now();
          }
          intent.okReplies++;
          intent.okIds.add(reply.message.id);
          if (reply.duplicate) {
            intent.duplicateReplies++;
            stats.duplicateReplies++;
          }
          intent.done = true;
        } else if (reply.error.code === "UNAVAILABLE" || reply.error.code === "RATE_LIMITED") {
          if (reply.error.code === "UNAVAILABLE") {
            intent.unavailable++;
            stats.unavailable++;
          } else {
            intent.rateLimited++;
            stats.rateLimited++;
          }
          await sleep(retryDelayMs * (0.5 + Math.random()));
        } else {
          intent.errors.push(reply.error.code);
          stats.otherErrors++;
          intent.done = true;
        }
      }
    }
  };
  const done = Promise.all(senders.map((_, i) => runSender(i))).then(() => {
    stats.finishedAt = Date.now();
  });
  return { stats, done };
}

/** Spreads `n` new clients over the nodes, alternating their first node. */
export function spread<T>(n: number, make: (i: number, startIndex: number) => T, nodes: number): T[] {
  return Array.from({ length: n }, (_, i) => make(i, i % nodes));
}
