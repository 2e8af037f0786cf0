// Host ends of the console: the terminal (raw mode on a TTY, QEMU's Ctrl-A x to quit) or pipes,
// and an in-memory host for tests. The driver component reaches them only as a ConsoleHost.

import type { ConsoleHost } from "./console.js";
import { ConsoleChannel } from "./protocol.js";

/** Collects output and lets a test type. `onOutput` sees every serial byte as it arrives. */
export class MemoryConsole implements ConsoleHost {
  readonly serial: number[] = [];
  readonly debugcon: number[] = [];
  private input: number[] = [];
  onOutput: ((text: string) => void) | null = null;

  write(channel: number, bytes: Uint8Array): void {
    (channel === ConsoleChannel.DEBUGCON ? this.debugcon : this.serial).push(...bytes);
    if (channel === ConsoleChannel.SERIAL0) this.onOutput?.(latin1(bytes));
  }

  takeInput(): Uint8Array {
    const out = Uint8Array.from(this.input);
    this.input = [];
    return out;
  }

  type(text: string): void {
    for (let i = 0; i < text.length; i++) this.input.push(text.charCodeAt(i) & 0xff);
  }

  get text(): string {
    return latin1(Uint8Array.from(this.serial));
  }
}

/** Where port 0xe9 output goes when not to the terminal: a file the host opened before the VM started. */
export interface DebugconSink {
  write(bytes: Uint8Array): void;
}

export interface TerminalOptions {
  /** Where port 0xe9 output goes: the terminal, a sink (a file), or nowhere. */
  debugcon?: "stdio" | DebugconSink | null;
  /** Called when input arrived (the host raises the console GSI). */
  onInput: () => void;
  /** Called on Ctrl-A x. */
  onQuit: () => void;
  /** Called on Ctrl-A s (save a snapshot, as QEMU's monitor key does); absent: the key is ignored. */
  onSave?: () => void;
}

/** The process's stdin/stdout. On a TTY stdin is put in raw mode; Ctrl-A x quits, Ctrl-A s saves a snapshot, Ctrl-A Ctrl-A sends Ctrl-A. */
export class TerminalConsole implements ConsoleHost {
  private input: number[] = [];
  private escape = false;
  private readonly rawMode: boolean;
  /** Every serial byte also goes here (for panic detection and tests). */
  readonly tail: number[] = [];

  constructor(private readonly options: TerminalOptions) {
    const stdin = process.stdin;
    this.rawMode = stdin.isTTY === true;
    if (this.rawMode) stdin.setRawMode(true);
    stdin.on("data", (chunk: Buffer) => this.onData(chunk));
    stdin.on("end", () => undefined);
  }

  write(channel: number, bytes: Uint8Array): void {
    if (channel === ConsoleChannel.DEBUGCON) {
      const d = this.options.debugcon;
      if (d === "stdio") process.stdout.write(bytes);
      else d?.write(bytes);
      return;
    }
    process.stdout.write(bytes);
    for (const b of bytes) this.tail.push(b);
    if (this.tail.length > 8192) this.tail.splice(0, this.tail.length - 4096);
  }

  takeInput(): Uint8Array {
    const out = Uint8Array.from(this.input);
    this.input = [];
    return out;
  }

  close(): void {
    if (this.rawMode) process.stdin.setRawMode(false);
    process.stdin.pause();
    process.stdin.removeAllListeners("data");
  }

  private onData(chunk: Buffer): void {
    for (const b of chunk) {
      if (this.rawMode && this.escape) {
        this.escape = false;
        if (b === 0x78 /* x */) {
          this.options.onQuit();
          return;
        }
        if (b === 0x73 /* s */) this.options.onSave?.();
        if (b === 0x01) this.input.push(0x01);
        continue;
      }
      if (this.rawMode && b === 0x01) {
        this.escape = true;
        continue;
      }
      // A terminal sends CR for Enter; the serial line of a real machine carries it unchanged.
      this.input.push(b);
    }
    this.options.onInput();
  }
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}
