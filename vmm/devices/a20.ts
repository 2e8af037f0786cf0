// The A20 gate: address line 20 is enabled when either the keyboard controller's output port or
// the fast A20 bit of port 0x92 says so. The VMM watches `onChange` to wrap or unwrap memory.

export type A20Source = "keyboard-controller" | "fast";

export class A20Gate {
  private sources = { "keyboard-controller": false, fast: false };
  /** Told when the combined state changes. */
  onChange: ((enabled: boolean) => void) | null = null;

  /** Whether A20 is enabled (addresses do not wrap at 1 MiB). */
  get enabled(): boolean {
    return this.sources["keyboard-controller"] || this.sources.fast;
  }

  set(source: A20Source, on: boolean): void {
    const before = this.enabled;
    this.sources[source] = on;
    if (this.enabled !== before) this.onChange?.(this.enabled);
  }
}
