import type { Clock } from "../clock";
import type { Config } from "../config";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import { PushService } from "../messaging/PushService";
import { PushWorker } from "../messaging/PushWorker";
import type { PushStore } from "../messaging/pushPorts";
import { MatrixPushGateway } from "./MatrixPushGateway";

export type Push = { service: PushService; worker: PushWorker | null };

const NOTIFY_PATH = "/_matrix/push/v1/notify";

/**
 * Push registrations always work (a client need not know whether this server pushes); the
 * worker and the gateway exist only with PUSH_GATEWAY_URL. Nothing here contacts the
 * gateway: one that is down at start delays pushes, never the server.
 */
export function createPush(config: Config, store: PushStore, clock: Clock, log: Logger, metrics: Metrics): Push {
  const service = new PushService(store, clock);
  const push = config.push;
  if (!push) return { service, worker: null };
  if (!new URL(push.gatewayUrl).pathname.endsWith(NOTIFY_PATH)) {
    log.warn({ url: push.gatewayUrl }, `PUSH_GATEWAY_URL does not end in ${NOTIFY_PATH}: Sygnal would answer 404`);
  }
  metrics.watchPushOutbox(() => store.outboxStats(), () => clock.now());
  const worker = new PushWorker(store, new MatrixPushGateway(push.gatewayUrl, push.timeoutMs), clock, push, log, {
    sent: (n) => metrics.pushSent.inc(n),
    retried: (n) => metrics.pushRetried.inc(n),
    failed: (n) => metrics.pushFailed.inc(n),
    rejected: (n) => metrics.pushkeysRejected.inc(n),
    cancelled: (n) => metrics.pushCancelled.inc(n),
  });
  return { service, worker };
}
