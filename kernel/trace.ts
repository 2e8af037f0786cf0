// What the kernel reports to a tracer, with virtual timestamps in ns. Null sink by default.

export interface TraceSink {
  /** `ec` of `pd` was dispatched. */
  schedule(t: number, pd: string, ec: string): void;
  /** A portal call enters `handlerPd` (exitReason >= 0 for VM exits, else -1). */
  callBegin(t: number, callerPd: string, handlerPd: string, portalId: number, exitReason: number): void;
  /** The handler of the innermost open call returned. */
  callEnd(t: number, handlerPd: string): void;
  vmExit(t: number, pd: string, reason: number): void;
  fault(t: number, pd: string, ec: string, error: unknown): void;
  /** A component's own counter: `name` of `pd` is `value` now (sys.traceCount). */
  count(t: number, pd: string, name: string, value: number): void;
}
