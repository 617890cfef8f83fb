import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { MatrixNotifyBody } from "../../src/push/MatrixPushGateway";

/**
 * How the fake gateway answers one POST: a status (and JSON body), or a fault: `hang` (never
 * answers), `close` (drops the connection), `garbage` (bytes that are not HTTP).
 */
export type GatewayAnswer = { status: number; body?: unknown } | "hang" | "close" | "garbage";

export type NotifyRequest = { body: MatrixNotifyBody; path: string; contentType: string | undefined; at: number };

/**
 * A real HTTP server playing a Matrix push gateway: records every notify and answers from a
 * script (then 200 `{ rejected: [] }`). It can stop and start again on the same port, to
 * play a gateway that is down for a while.
 */
export class FakePushGateway {
  readonly requests: NotifyRequest[] = [];
  /** Answers for the next requests, in order; `fallback` once it is empty. */
  readonly script: GatewayAnswer[] = [];
  fallback: GatewayAnswer = { status: 200, body: { rejected: [] } };
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();

  constructor(public port = 0) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/_matrix/push/v1/notify`;
  }

  /** Notifies for one message id. */
  for(eventId: string): NotifyRequest[] {
    return this.requests.filter((r) => r.body.notification.event_id === eventId);
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  /** Stops listening and cuts every open connection (hanging requests included). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    this.hanging.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    this.requests.push({
      body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as MatrixNotifyBody,
      path: req.url ?? "",
      contentType: req.headers["content-type"],
      at: Date.now(),
    });
    const answer = this.script.shift() ?? this.fallback;
    if (answer === "hang") {
      this.hanging.add(res);
      return;
    }
    if (answer === "close") return void req.socket.destroy();
    if (answer === "garbage") {
      req.socket.end("\x00\x13garbage, not HTTP\r\n\r\n");
      return;
    }
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(answer.body === undefined ? "{}" : typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body));
  }
}
