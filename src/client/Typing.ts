/**
 * Typing indicators both ways. Outgoing: call typing() on every keystroke; the server hears
 * `typing: true` at most once per `throttleMs` and `typing: false` after `idleMs` without
 * keystrokes (or at once on stop()). Incoming: an indicator whose `false` never arrives (the
 * typist's connection dropped) is turned off after `expireMs`.
 */
export type TypingOptions = {
  /** @default 3000 */
  throttleMs?: number;
  /** @default 4000 */
  idleMs?: number;
  /** @default 8000 */
  expireMs?: number;
};

type Timer = ReturnType<typeof setTimeout>;

export class TypingThrottle {
  private readonly lastSent = new Map<string, number>();
  private readonly idle = new Map<string, Timer>();
  private readonly expiry = new Map<string, Timer>();
  private readonly throttleMs: number;
  private readonly idleMs: number;
  private readonly expireMs: number;

  constructor(
    private readonly send: (conversationId: string, typing: boolean) => void,
    private readonly shown: (conversationId: string, userId: string, typing: boolean) => void,
    options: TypingOptions = {},
  ) {
    this.throttleMs = options.throttleMs ?? 3000;
    this.idleMs = options.idleMs ?? 4000;
    this.expireMs = options.expireMs ?? 8000;
  }

  typing(conversationId: string, now = Date.now()): void {
    const last = this.lastSent.get(conversationId);
    if (last === undefined || now - last >= this.throttleMs) {
      this.lastSent.set(conversationId, now);
      this.send(conversationId, true);
    }
    clearTimeout(this.idle.get(conversationId));
    this.idle.set(
      conversationId,
      setTimeout(() => this.stop(conversationId), this.idleMs),
    );
  }

  stop(conversationId: string): void {
    clearTimeout(this.idle.get(conversationId));
    this.idle.delete(conversationId);
    if (!this.lastSent.delete(conversationId)) return;
    this.send(conversationId, false);
  }

  /** An incoming `typing` event. */
  received(conversationId: string, userId: string, typing: boolean): void {
    const key = `${conversationId}\n${userId}`;
    clearTimeout(this.expiry.get(key));
    this.expiry.delete(key);
    if (typing) this.expiry.set(key, setTimeout(() => this.received(conversationId, userId, false), this.expireMs));
    this.shown(conversationId, userId, typing);
  }

  close(): void {
    for (const t of [...this.idle.values(), ...this.expiry.values()]) clearTimeout(t);
    this.idle.clear();
    this.expiry.clear();
  }
}
