// A kernel trace sink that records Chrome trace events (open the file in Perfetto or chrome://tracing).
// Time is virtual by default (1 trace µs = 1,000 virtual ns); with a host clock the spans show
// where host time goes instead (IPC, and device models inside VM-exit handlers). Each PD is a thread
// track of one process.

import { writeFileSync } from "node:fs";
import { ExitReason, type TraceSink } from "../kernel/index.js";

interface TraceEvent {
  name: string;
  ph: "B" | "E" | "i" | "M" | "C";
  ts: number;
  pid: number;
  tid: number;
  s?: "t" | "p" | "g";
  args?: Record<string, unknown>;
}

export class ChromeTrace implements TraceSink {
  private readonly events: TraceEvent[] = [];
  private readonly tids = new Map<string, number>();
  private readonly open: number[] = [];
  private readonly exitCounts = new Map<string, number>();
  /** Events beyond this many are dropped (counted), so a long run cannot exhaust memory. */
  dropped = 0;

  private readonly hostClock: (() => number) | null;
  private readonly limit: number;

  constructor(options: { limit?: number; hostClock?: () => number } = {}) {
    this.limit = options.limit ?? 2_000_000;
    this.hostClock = options.hostClock ?? null;
  }

  schedule(t: number, pd: string, ec: string): void {
    this.push({ name: `run ${ec}`, ph: "i", s: "t", ts: t / 1000, pid: 1, tid: this.tid(pd) });
  }

  callBegin(t: number, callerPd: string, handlerPd: string, portalId: number, exitReason: number): void {
    const tid = this.tid(handlerPd);
    this.open.push(tid);
    const name = exitReason >= 0 ? `exit ${ExitReason[exitReason] ?? exitReason}` : `call from ${callerPd}`;
    this.push({ name, ph: "B", ts: t / 1000, pid: 1, tid, args: { portalId } });
  }

  callEnd(t: number, _handlerPd: string): void {
    const tid = this.open.pop() ?? 0;
    this.push({ name: "", ph: "E", ts: t / 1000, pid: 1, tid });
  }

  vmExit(t: number, pd: string, reason: number): void {
    const name = ExitReason[reason] ?? String(reason);
    const n = (this.exitCounts.get(name) ?? 0) + 1;
    this.exitCounts.set(name, n);
    this.push({ name: "VM exits", ph: "C", ts: t / 1000, pid: 1, tid: this.tid(pd), args: { [name]: n } });
  }

  fault(t: number, pd: string, ec: string, error: unknown): void {
    this.push({ name: `fault in ${ec}`, ph: "i", s: "p", ts: t / 1000, pid: 1, tid: this.tid(pd), args: { error: String(error) } });
  }

  count(t: number, pd: string, name: string, value: number): void {
    this.push({ name: "counters", ph: "C", ts: t / 1000, pid: 1, tid: this.tid(pd), args: { [name]: value } });
  }

  /** VM exits counted by reason. */
  get exits(): ReadonlyMap<string, number> {
    return this.exitCounts;
  }

  toJSON(): { traceEvents: TraceEvent[]; displayTimeUnit: string; otherData: Record<string, unknown> } {
    const meta: TraceEvent[] = [{ name: "process_name", ph: "M", ts: 0, pid: 1, tid: 0, args: { name: "hv (virtual time)" } }];
    for (const [pd, tid] of this.tids) meta.push({ name: "thread_name", ph: "M", ts: 0, pid: 1, tid, args: { name: pd } });
    return { traceEvents: [...meta, ...this.events], displayTimeUnit: "ns", otherData: { dropped: this.dropped } };
  }

  write(path: string): void {
    writeFileSync(path, JSON.stringify(this.toJSON()));
  }

  private tid(pd: string): number {
    let t = this.tids.get(pd);
    if (t === undefined) this.tids.set(pd, (t = this.tids.size + 1));
    return t;
  }

  private push(e: TraceEvent): void {
    if (this.hostClock) e.ts = this.hostClock() / 1000;
    if (this.events.length >= this.limit) this.dropped++;
    else this.events.push(e);
  }
}
