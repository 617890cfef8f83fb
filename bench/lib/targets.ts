/**
 * The performance targets, checked against the figures of this run (those of the
 * scenarios that ran; a target whose scenario did not run is left out).
 */
import type { Context } from "../scenarios/context";
import { ratio } from "./stats";
import { formatNumber, type Row, type Section } from "./table";

/** `alsoHolds` false: the target fails whatever `measured` is (a condition besides the figure). */
type Check = { label: string; measured: number | null; limit: number; atMost: boolean; unit: "ms" | "x"; alsoHolds?: boolean };

export function targetsSection(shared: Context["shared"]): Section | null {
  const checks: Check[] = [];
  const { main, history, idle } = shared;
  if (main) {
    checks.push(
      {
        label: "max load: lifecycles/s ≥ 0.6× the relay's, all completed",
        measured: ratio(main.ticksMax.lifecyclesPerSec, main.relayMax.lifecyclesPerSec),
        limit: 0.6,
        atMost: false,
        unit: "x",
        alsoHolds: main.ticksMax.incomplete.status === 0,
      },
      { label: "paced: ack p50 ≤ 10 ms", measured: main.ticksPaced.ackMs.p50, limit: 10, atMost: true, unit: "ms" },
      { label: "paced: ack p99 ≤ 40 ms", measured: main.ticksPaced.ackMs.p99, limit: 40, atMost: true, unit: "ms" },
      { label: "paced: status p99 ≤ 60 ms", measured: main.ticksPaced.statusMs.p99, limit: 60, atMost: true, unit: "ms" },
      { label: "max load: db CPU ≤ 0.04 ms per message", measured: main.ticksMax.dbCpuMsPerMsg, limit: 0.04, atMost: true, unit: "ms" },
    );
  }
  if (history) {
    checks.push(
      {
        label: "history: max acked msg/s ≥ 0.9× the empty database's",
        measured: ratio(history.fullMax.ackedPerSec, history.emptyMax.ackedPerSec),
        limit: 0.9,
        atMost: false,
        unit: "x",
      },
      {
        label: "history: paced ack p99 ≤ 1.2× the empty database's",
        measured: ratio(history.fullPaced.ackMs.p99, history.emptyPaced.ackMs.p99),
        limit: 1.2,
        atMost: true,
        unit: "x",
      },
    );
  }
  if (idle) {
    checks.push(
      {
        label: "idle: opening the sockets ≤ 1.3× the relay's time",
        measured: ratio(idle.ticks.connectSeconds, idle.relay.connectSeconds),
        limit: 1.3,
        atMost: true,
        unit: "x",
      },
      {
        label: "idle: heap per socket ≤ 1.25× the relay's",
        measured: ratio(idle.ticks.heapKbPerSocket, idle.relay.heapKbPerSocket),
        limit: 1.25,
        atMost: true,
        unit: "x",
      },
    );
  }
  if (checks.length === 0) return null;
  const rows: Row[] = checks.map((c) => {
    const holds = c.measured === null ? null : (c.alsoHolds ?? true) && (c.atMost ? c.measured <= c.limit : c.measured >= c.limit);
    const shown = c.measured === null ? "-" : c.unit === "x" ? `${c.measured.toFixed(2)}x` : `${formatNumber(c.measured)} ms`;
    return { label: c.label, cells: [shown, holds === null ? "-" : holds ? "yes" : "NO"] };
  });
  const held = rows.filter((r) => "cells" in r && r.cells[1] === "yes").length;
  return { title: "targets", columns: ["measured", "holds"], rows, notes: [`${held} of ${checks.length} hold in this run`] };
}
