// Interrupt lines: the wire from a device's interrupt output to interrupt-controller inputs.
//
// A line carries a level. Controllers decide what the level means: an edge-triggered input
// latches a request on a low-to-high transition, a level-triggered input sees the request for as
// long as the line is high. `pulse()` is a rising edge followed at once by a falling one, the way
// an edge-only source signals. One line may fan out to several inputs (on a PC an ISA IRQ goes to
// both the 8259 and the I/O APIC).

/** An interrupt controller's input side. */
export interface IrqSink {
  /** Input `pin` now has `level` (true = asserted). Called only on changes. */
  setIrq(pin: number, level: boolean): void;
}

/** One controller input a line drives. */
export interface IrqTarget {
  sink: IrqSink;
  pin: number;
}

export class IrqLine {
  private asserted = false;
  private readonly targets: IrqTarget[];

  /** A line driving `targets` (none: an unconnected line, which still keeps its level). */
  constructor(targets: IrqTarget[] = []) {
    this.targets = targets.slice();
  }

  /** Another controller input driven by this line (wiring time only). */
  connect(target: IrqTarget): void {
    this.targets.push(target);
    if (this.asserted) target.sink.setIrq(target.pin, true);
  }

  get level(): boolean {
    return this.asserted;
  }

  /** Drive the line to `level`; controllers hear only changes. */
  set(level: boolean): void {
    if (level === this.asserted) return;
    this.asserted = level;
    for (const t of this.targets) t.sink.setIrq(t.pin, level);
  }

  raise(): void {
    this.set(true);
  }

  lower(): void {
    this.set(false);
  }

  /** A rising then a falling edge; an edge-triggered input latches one request. */
  pulse(): void {
    this.set(false);
    this.set(true);
    this.set(false);
  }

  /**
   * Set the level without telling the controllers, for loadState(): the controllers restore
   * their own view of their inputs from their own saved state.
   */
  restore(level: boolean): void {
    this.asserted = level;
  }
}

/**
 * Several sources wired-OR onto one line (a shared level-triggered IRQ: the ACPI SCI and a PCI
 * INTx both on IRQ 9): the line is high while any input is. Each source drives its own input, so
 * one source lowering its input never drops another's request.
 */
export class SharedIrq implements IrqSink {
  private readonly inputs: IrqLine[] = [];

  constructor(private readonly out: IrqLine) {}

  /** A new input line for one source (wiring time only). */
  input(): IrqLine {
    const line = new IrqLine([{ sink: this, pin: this.inputs.length }]);
    this.inputs.push(line);
    return line;
  }

  setIrq(): void {
    this.out.set(this.inputs.some((l) => l.level));
  }

  /** After the sources restored their inputs (loadState): the output's level, without telling the controllers. */
  resync(): void {
    this.out.restore(this.inputs.some((l) => l.level));
  }
}
