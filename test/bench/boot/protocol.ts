// Boot benchmark protocol: what the parent hands a child runner, what a runner reports back, and
// the serial-line watcher that spots `BOOT-OK <uptime>` and keeps the last lines for diagnosis.
import { VmEnd } from "../../../services/root-protocol.js";
import type { VmRunResult } from "../../../bin/vm-runner.js";

/** What a child runner boots (the same for our stack and for v86). */
export interface BootJob {
  kernel: string;
  initrd: string;
  append: string;
  memoryBytes: number;
  /** Wall-clock seconds the runner may spend before it gives up on its own. */
  timeoutSeconds: number;
  /** Copy the guest's serial output to stderr as it arrives. */
  echoSerial: boolean;
  /** vCPUs of our VM (more than 1: with local APICs); v86 always has one. Absent: 1. */
  cpus?: number;
}

/** What a child runner prints as its last stdout line, after RESULT_PREFIX. */
export interface BootReport {
  runner: string;
  booted: boolean;
  /** Wall seconds from starting the VM (constructor / runVm call) to the BOOT-OK line. */
  bootSeconds: number | null;
  /** Seconds of guest uptime printed by BOOT-OK. */
  guestUptime: number | null;
  /**
   * Wall seconds from starting the VM to the first byte on the serial port, whoever wrote it: on
   * v86 Linux's 16-bit setup code ("Probing EDD"), which SeaBIOS runs before the decompressor; ours
   * enters at the 32-bit entry point (no setup code), so its first byte is the kernel's banner.
   */
  firstOutputSeconds: number | null;
  /**
   * Wall and CPU seconds from starting the VM to the Linux kernel's banner (`Linux version ...`, its
   * first message: the decompressor before it prints nothing without CONFIG_X86_VERBOSE_BOOTUP),
   * the same moment on both sides; null when it was not seen (`quiet` hides it).
   */
  linuxOutputSeconds: number | null;
  linuxOutputCpuSeconds: number | null;
  /** CPU seconds (user + system) the runner process had used when it saw BOOT-OK or gave up. */
  cpuSeconds: number;
  /** Wall seconds from process start to starting the VM (Node, module loading, reading files). */
  setupSeconds: number;
  /** When the VM was started, in microseconds of the monotonic clock (process.hrtime, CPU profiles). */
  vmStartMicros?: number;
  /** Peak resident set size of the runner process, MiB. */
  peakRssMiB: number;
  /** Why the run ended: "boot-ok", "timeout", or the VM's own end reason. */
  end: string;
  /** Extra detail about the end (the VMM's message, an exception). */
  detail: string;
  /** The last lines of serial output. */
  lastLines: string[];
}

export const RESULT_PREFIX = "BOOT-BENCH-RESULT ";

/** Error for a runner's command line that is not a BootJob. */
export class BadBootJobError extends Error {
  override name = "BadBootJobError";
}

/** Parses the JSON a runner gets as its argument; throws BadBootJobError naming what is wrong. */
export function parseBootJob(text: string | undefined): BootJob {
  if (text === undefined) throw new BadBootJobError("missing argument: a JSON boot job");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BadBootJobError("the boot job is not JSON");
  }
  const job = raw as Partial<Record<keyof BootJob, unknown>>;
  if (typeof raw !== "object" || raw === null) throw new BadBootJobError("the boot job is not an object");
  for (const key of ["kernel", "initrd", "append"] as const) {
    if (typeof job[key] !== "string") throw new BadBootJobError(`boot job: '${key}' must be a string`);
  }
  for (const key of ["memoryBytes", "timeoutSeconds"] as const) {
    const v = job[key];
    if (typeof v !== "number" || !(v > 0)) throw new BadBootJobError(`boot job: '${key}' must be a positive number`);
  }
  return {
    kernel: job.kernel as string,
    initrd: job.initrd as string,
    append: job.append as string,
    memoryBytes: job.memoryBytes as number,
    timeoutSeconds: job.timeoutSeconds as number,
    echoSerial: job.echoSerial === true,
    cpus: typeof job.cpus === "number" && Number.isInteger(job.cpus) && job.cpus >= 1 ? job.cpus : 1,
  };
}

/** Finds the runner's report in its stdout (the last RESULT_PREFIX line); null when there is none. */
export function findReport(stdout: string): BootReport | null {
  const lines = stdout.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i].startsWith(RESULT_PREFIX)) continue;
    try {
      return JSON.parse(lines[i].slice(RESULT_PREFIX.length)) as BootReport;
    } catch {
      return null;
    }
  }
  return null;
}

const BOOT_OK_LINE = /^BOOT-OK (\d+(?:\.\d+)?)$/;
/** The kernel's banner, its first printk (init/main.c), after an optional `[    0.000000] ` time stamp. */
const LINUX_BANNER = /^(?:\[[ \d.]+\] )?Linux version \d/;

/**
 * Watches serial output byte by byte: completes lines (CR and escape sequences dropped), keeps the
 * last `keep` of them, and calls `onBootOk` once, when a whole line `BOOT-OK <uptime>` arrives, and
 * `onLinuxBanner` once, when the kernel's banner line (`Linux version ...`) does.
 */
export class SerialWatcher {
  private line = "";
  private readonly lines: string[] = [];
  bootOkUptime: number | null = null;
  private bannerSeen = false;

  constructor(
    private readonly onBootOk: (uptime: number) => void,
    private readonly keep = 30,
    private readonly onLinuxBanner: () => void = () => undefined,
  ) {}

  /** Feeds one byte of serial output. */
  byte(b: number): void {
    if (b === 0x0a) {
      this.endLine();
    } else if (b !== 0x0d && this.line.length < 4096) {
      this.line += String.fromCharCode(b);
    }
  }

  /** Feeds a chunk of latin1 text. */
  text(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i) & 0xff);
  }

  /** The last lines, with the unfinished one (if any) at the end. */
  lastLines(n = this.keep): string[] {
    const all = this.line.length > 0 ? [...this.lines, this.line] : this.lines;
    return all.slice(-n);
  }

  private endLine(): void {
    // Strip ANSI escape sequences (busybox and the kernel rarely send them, but a shell prompt may).
    const line = this.line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").trimEnd();
    this.line = "";
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.shift();
    if (!this.bannerSeen && LINUX_BANNER.test(line)) {
      this.bannerSeen = true;
      this.onLinuxBanner();
    }
    if (this.bootOkUptime !== null) return;
    const m = BOOT_OK_LINE.exec(line);
    if (m) {
      this.bootOkUptime = Number(m[1]);
      this.onBootOk(this.bootOkUptime);
    }
  }
}

/** Now, in microseconds of the monotonic clock V8's CPU profiles use. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** CPU seconds (user + system) this process has used so far. */
export function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Peak RSS of this process in MiB (resourceUsage().maxRSS is in KiB). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Prints the report as the runner's last stdout line. */
export function emitReport(report: BootReport): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
}

/** A name for how the VM ended, for the report. */
export function endName(result: Pick<VmRunResult, "stop" | "why">): string {
  if (result.stop !== "ended") return result.stop === "quit" ? "stopped" : result.stop;
  switch (result.why) {
    case VmEnd.HALTED: return "halted (cli; hlt)";
    case VmEnd.DEBUG_EXIT: return "debug-exit";
    case VmEnd.RESET: return "reset request";
    case VmEnd.TRIPLE_FAULT: return "triple fault";
    case VmEnd.ERROR: return "vcpu error";
    default: return "ended";
  }
}
