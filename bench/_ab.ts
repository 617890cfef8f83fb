import { devAuth } from "./lib/load";
import { runInterleaved, type Contender, type PhaseOptions, type PhaseResult } from "./lib/phase";
import { renderSection } from "./lib/table";
import { startTicksOnFreshDb } from "./lib/ticks";
import { comparisonRows } from "./scenarios/main";
(async () => {
  const [envA, envB] = [JSON.parse(process.argv[2]!), JSON.parse(process.argv[3]!)];
  const rate = Number(process.argv[4] ?? 1500);
  const phase: PhaseOptions = { pairs: 50, inFlight: 8, warmupMs: 2000, durationMs: 8000, rounds: 2, drainMs: 10000, contentSize: 100 };
  const a = await startTicksOnFreshDb(envA);
  const b = await startTicksOnFreshDb(envB);
  try {
    const sides = (s: string): Contender[] => [
      { target: { ...a.target, name: "A" }, auth: devAuth, probe: a.probe, tag: `a${s}${Date.now()}`, batchMetrics: true },
      { target: { ...b.target, name: "B" }, auth: devAuth, probe: b.probe, tag: `b${s}${Date.now()}`, batchMetrics: true },
    ];
    const log = (l: string) => console.error(l);
    const [am, bm] = (await runInterleaved(sides("m"), { kind: "max" }, phase, log)) as [PhaseResult, PhaseResult];
    const [ap, bp] = (await runInterleaved(sides("p"), { kind: "paced", rate }, phase, log)) as [PhaseResult, PhaseResult];
    console.log(renderSection({ title: `A=${process.argv[2]} B=${process.argv[3]}`, columns: ["A", "B", "B/A"], rows: [{ heading: "max" }, ...comparisonRows(am, bm, { paced: false }), { heading: `paced ${rate}` }, ...comparisonRows(ap, bp, { paced: true })], notes: [] }));
  } finally {
    await a.stop();
    await b.stop();
  }
  process.exit(0);
})();
