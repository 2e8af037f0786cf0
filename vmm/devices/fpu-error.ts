// The PC's x87 error logic (port F0h): the CPU's FERR# output becomes ISA IRQ 13, and the
// interrupt handler's write to port F0h drives IGNNE# back to the CPU (MS-DOS compatibility mode,
// CR0.NE = 0). Two latches, as in the SDM's recommended circuit (Vol. 1, appendix D):
//  - the IRQ 13 request is set by a rising FERR# and cleared by a write to port F0h;
//  - IGNNE# is set by a write to port F0h while FERR# is asserted and cleared whenever FERR# is
//    not, so it can never outlive the exception it was asserted for.

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

export const FPU_ERROR_PORT = 0xf0;

export class FpuErrorLogic implements Device, BusHandler {
  readonly name = "fpu-error";
  private ferrLevel = false;
  private ignneLevel = false;
  /** Called when IGNNE# changes: the VMM passes it on to the vCPU. */
  onIgnne: ((level: boolean) => void) | null = null;

  constructor(private readonly irq: IrqLine) {}

  attach(io: IoBus): void {
    io.register({ name: this.name, base: FPU_ERROR_PORT, length: 1, sizes: 1, handler: this });
  }

  get ferr(): boolean {
    return this.ferrLevel;
  }

  get ignne(): boolean {
    return this.ignneLevel;
  }

  /** The CPU's FERR# output changed level. */
  setFerr(level: boolean): void {
    if (level === this.ferrLevel) return;
    this.ferrLevel = level;
    if (level) this.irq.raise();
    else this.setIgnne(false);
  }

  reset(): void {
    this.ferrLevel = false;
    this.irq.lower();
    this.setIgnne(false);
  }

  /** Nothing answers reads of port F0h on a PC: the bus floats. */
  read(_port: number, _size: AccessSize): number {
    return 0xff;
  }

  /** Any write: clear the IRQ 13 request; assert IGNNE# if FERR# is still asserted. */
  write(_port: number, _size: AccessSize, _v: number): void {
    this.irq.lower();
    if (this.ferrLevel) this.setIgnne(true);
  }

  private setIgnne(level: boolean): void {
    if (level === this.ignneLevel) return;
    this.ignneLevel = level;
    this.onIgnne?.(level);
  }

  saveState(): object {
    return { ferr: this.ferrLevel, ignne: this.ignneLevel, request: this.irq.level };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const ferr = r.bool("ferr"), ignne = r.bool("ignne"), request = r.bool("request");
    this.ferrLevel = ferr;
    this.ignneLevel = ignne && ferr;
    this.irq.set(request);
  }
}
