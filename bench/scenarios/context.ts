/** What every scenario gets from the runner. */
import type { PhaseResult } from "../lib/phase";
import type { Section } from "../lib/table";
import type { IdleResult } from "../lib/idleSockets";

export type BenchOptions = {
  durationS: number;
  warmupS: number;
  /** Rounds the measured time is split into, targets alternating (A B A B …). */
  rounds: number;
  pairs: number;
  inFlight: number;
  /**
   * Paced phase rate in msg/s, or "auto": main, the higher of 2 000 and half Ticks' measured
   * maximum; history, half the lower of its two maxima.
   */
  rate: number | "auto";
  contentSize: number;
  drainS: number;
  backlog: number;
  backlogLiveRate: number;
  idleSockets: number;
  idleProcesses: number | "auto";
  pm2Instances: number[];
  /** Messages (and conversations) seeded for the history scenario. */
  historyMessages: number;
  historyConversations: number;
  /** A seeded database the history scenario copies instead of seeding (bench/investigations/seed.ts). */
  historyTemplate: string | null;
  /** History: sample the whole PostgreSQL server and log slow statements, to explain stalls. */
  pgDiagnostics: boolean;
  /** The Redis of the adapters scenario (each adapter gets its own key prefix). */
  redisUrl: string;
  /** Messages of 4 KB sent to the device that stopped reading (slow scenario). */
  slowMessages: number;
  slowWarmup: number;
  /** Length of the soak run. */
  soakMinutes: number;
  /** Soak: each user sends to this many fixed peers (0: to random users, the chat lists keep growing). */
  soakPeers: number;
  /** Soak with fixed peers: messages each user sends each peer before the run starts (a warm-up). */
  soakPrefill: number;
  /** Members of the group scenario's group, every one connected. */
  groupSize: number;
  /** Messages outstanding from the group scenario's sender. */
  groupInFlight: number;
  /** C100k: sockets on one server process, the client processes and source addresses holding them, the paced load. */
  c100kSockets: number;
  c100kProcesses: number;
  c100kAddresses: number;
  c100kRate: number;
  c100kLoadSeconds: number;
};

export type Context = {
  options: BenchOptions;
  /** Unique per run: user ids, clientMsgIds, Redis prefixes. */
  runId: string;
  log: (line: string) => void;
  /** Figures one scenario leaves for another (the relay's msg/s for the backlog ratio). */
  shared: {
    relayMaxMsgPerSec?: number;
    main?: { relayMax: PhaseResult; ticksMax: PhaseResult; relayPaced: PhaseResult; ticksPaced: PhaseResult };
    history?: { emptyMax: PhaseResult; fullMax: PhaseResult; emptyPaced: PhaseResult; fullPaced: PhaseResult };
    idle?: { relay: IdleResult; ticks: IdleResult };
  };
};

export type ScenarioResult = { sections: Section[]; data: Record<string, unknown> };
