import type { GatewayAnswer, PushGateway, PushNotification } from "../messaging/pushPorts";

/** The notify body of the Matrix Push Gateway API (POST /_matrix/push/v1/notify). */
export type MatrixNotifyBody = {
  notification: {
    event_id: string;
    room_id: string;
    type: "m.room.message";
    sender: string;
    prio: "high";
    counts: { unread: number };
    devices: { app_id: string; pushkey: string; pushkey_ts: number }[];
    content?: { body: string };
  };
};

export function notifyBody(n: PushNotification): MatrixNotifyBody {
  return {
    notification: {
      event_id: n.messageId,
      room_id: n.conversationId,
      type: "m.room.message",
      sender: n.from,
      prio: "high",
      counts: { unread: n.unread },
      devices: n.devices.map((d) => ({
        app_id: d.appId,
        pushkey: d.pushkey,
        pushkey_ts: Math.floor(d.registeredAt.getTime() / 1000),
      })),
      ...(n.content !== undefined ? { content: { body: n.content } } : {}),
    },
  };
}

/**
 * A Matrix push gateway (Sygnal or any other speaking the same API), over Node's built-in
 * fetch. `url` is the full notify URL. Every failure comes back as `ok: false` with a
 * reason, never as an exception: the worker decides about retries.
 */
export class MatrixPushGateway implements PushGateway {
  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  async notify(notification: PushNotification, signal?: AbortSignal): Promise<GatewayAnswer> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      const res = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(notifyBody(notification)),
        // The timeout covers the answer's body too: a gateway that stalls mid-answer fails as well.
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      const text = await res.text();
      if (res.status < 200 || res.status > 299) return { ok: false, reason: `HTTP ${res.status}` };
      return parseAnswer(text);
    } catch (err) {
      if (timeout.aborted) return { ok: false, reason: `timeout after ${this.timeoutMs} ms` };
      if (signal?.aborted) return { ok: false, reason: "aborted" };
      const e = err as Error & { cause?: { code?: string; message?: string } };
      return { ok: false, reason: e.cause?.code ?? e.cause?.message ?? e.message };
    }
  }
}

/**
 * A 2xx answer is `{ "rejected": [pushkey, …] }`. One that is not JSON at all did not come
 * from a push gateway (a proxy's error page, say): it counts as failed and is retried.
 */
function parseAnswer(text: string): GatewayAnswer {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, reason: "2xx answer that is not JSON" };
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, reason: "2xx answer that is not a JSON object" };
  }
  const rejected = (body as { rejected?: unknown }).rejected;
  return { ok: true, rejected: Array.isArray(rejected) ? rejected.filter((k): k is string => typeof k === "string") : [] };
}
