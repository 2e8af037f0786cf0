// Local APIC (xAPIC, MMIO at 0xfee00000) of one vCPU.
//
// Interrupt acceptance (IRR/ISR/TMR as 256-bit sets), task and processor priority, EOI (with a
// callback for level-triggered vectors so the I/O APIC can clear remote IRR), the spurious vector
// register, the LVT entries, ICR self/broadcast IPIs and NMIs, and the timer in one-shot and
// periodic modes on virtual time. The timer's input clock is fixed at 1 GHz (1 ns per tick before
// the divider); guests calibrate it. LINT0 in ExtINT mode passes the PIC's INTR through, which is
// how a PIC-only (`noapic`) guest gets its interrupts with the APIC enabled; with the APIC
// globally disabled (IA32_APIC_BASE bit 11 clear) the PIC is passed through unconditionally.
// On a multiprocessor the APICs share an APIC bus (apic-bus.ts): IPIs from the ICR go there, to
// fixed, lowest-priority, NMI, INIT and start-up (SIPI) delivery at their destinations; INIT and
// SIPI are handed to the VMM, which owns the vCPUs. Only the boot processor's LINT0 starts in
// ExtINT mode (the others masked). TSC-deadline mode and x2APIC are not modelled.

import type { AccessSize, BusHandler, Device, MmioBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { InterruptController } from "./pic.js";
import { StateReader } from "./state.js";

export const LAPIC_BASE = 0xfee00000;
/** Timer ticks per second before the divide configuration. */
export const LAPIC_TIMER_HZ = 1e9;

/** Delivery modes of LVT entries, ICR and I/O APIC redirection entries. */
export const DeliveryMode = { FIXED: 0, LOWEST: 1, SMI: 2, NMI: 4, INIT: 5, STARTUP: 6, EXTINT: 7 } as const;

/** An interrupt message as the I/O APIC (or an IPI) sends it on the APIC bus. */
export interface ApicMessage {
  vector: number;
  deliveryMode: number;
  levelTriggered: boolean;
  /** Destination APIC ID (physical) or logical mask. */
  destination: number;
  logical: boolean;
}

/** Where an I/O APIC sends its messages. */
export interface ApicMessageTarget {
  receiveMessage(msg: ApicMessage): void;
}

/** ICR destination shorthands (bits 19:18). */
export const Shorthand = { NONE: 0, SELF: 1, ALL: 2, ALL_BUT_SELF: 3 } as const;

/** Where a local APIC sends its IPIs: the APIC bus of a multiprocessor. */
export interface IpiTarget {
  sendIpi(msg: ApicMessage, from: LocalApic, shorthand: number): void;
}

// LVT indices and register offsets.
const LVT_OFFSETS = [0x2f0, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370];
const LVT_TIMER = 1;
const LVT_LINT0 = 4;
const LVT_LINT1 = 5;
const LVT_ERROR = 6;
const LVT_WRITABLE = [0x107ff, 0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff];
const LVT_MASKED = 0x10000;
const SVR_ENABLE = 0x100;
const APIC_BASE_ENABLE = 0x800;
const APIC_BASE_BSP = 0x100;
const ESR_RECEIVE_ILLEGAL = 0x40;
const ESR_SEND_ILLEGAL = 0x20;
/** ICR bits 14 (level: assert) and 15 (trigger mode: level). */
const ICR_LEVEL_ASSERT = 0x4000;
const ICR_LEVEL_TRIGGERED = 0x8000;

function bitTest(set: Uint32Array, v: number): boolean {
  return (set[v >> 5] & (1 << (v & 31))) !== 0;
}
function bitSet(set: Uint32Array, v: number): void {
  set[v >> 5] |= 1 << (v & 31);
}
function bitClear(set: Uint32Array, v: number): void {
  set[v >> 5] &= ~(1 << (v & 31));
}
/** Highest vector in the set, -1 if empty. */
function highest(set: Uint32Array): number {
  for (let w = 7; w >= 0; w--) if (set[w]) return w * 32 + 31 - Math.clz32(set[w]);
  return -1;
}

export class LocalApic implements Device, BusHandler, InterruptController, ApicMessageTarget {
  /** "lapic" for the boot processor's (APIC ID 0), "lapic<id>" for the others. */
  readonly name: string;
  /** Told when hasInterrupt() changes (the VMM recalls the vCPU on a rise). */
  onIntr: ((pending: boolean) => void) | null = null;
  /** Told the vector of every EOI of a level-triggered interrupt (the I/O APIC clears remote IRR). */
  onLevelEoi: ((vector: number) => void) | null = null;
  /** Told when an NMI is delivered (ICR, LINT1 or an NMI message). */
  onNmi: (() => void) | null = null;
  /** The PIC behind LINT0 (ExtINT) and behind a globally disabled APIC. */
  extInt: InterruptController | null = null;
  /** Told of an INIT delivered to this APIC's processor (level assert; the de-assert only synchronises). */
  onInit: (() => void) | null = null;
  /** Told of a start-up IPI with its vector (the processor starts at vector * 4096 in real mode). */
  onStartup: ((vector: number) => void) | null = null;
  /** The APIC bus IPIs go to; without one, only IPIs to this APIC itself arrive. */
  ipiTarget: IpiTarget | null = null;

  private apicBase = (LAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP) >>> 0;
  private tpr = 0;
  private svr = 0xff;
  private ldr = 0;
  private dfr = 0xffffffff;
  private lvt = new Uint32Array(7);
  private icrLow = 0;
  private icrHigh = 0;
  private esr = 0;
  private pendingEsr = 0;
  private dcr = 0;
  private initialCount = 0;
  /** Virtual ns at which the current timer count started. */
  private timerStartNs = 0;
  /** Virtual ns of the next timer expiry; -1 = not running. */
  private timerDeadline = -1;
  private irr = new Uint32Array(8);
  private isr = new Uint32Array(8);
  private tmr = new Uint32Array(8);
  private timer: TimerHandle = 0;
  private intr = false;

  constructor(private readonly clock: DeviceClock, readonly id = 0) {
    this.name = id === 0 ? "lapic" : `lapic${id}`;
    this.reset();
  }

  /** IA32_APIC_BASE after reset: enabled, with the BSP flag on the boot processor's. */
  private get resetBase(): number {
    return (LAPIC_BASE | APIC_BASE_ENABLE | (this.id === 0 ? APIC_BASE_BSP : 0)) >>> 0;
  }

  /** Claim the 4 KiB register page. */
  attach(mmio: MmioBus): void {
    mmio.register({ name: this.name, base: LAPIC_BASE, length: 0x1000, sizes: 4, handler: this });
  }

  reset(): void {
    this.apicBase = this.resetBase;
    this.tpr = 0;
    this.svr = 0xff;
    this.ldr = 0;
    this.dfr = 0xffffffff;
    this.lvt.fill(LVT_MASKED);
    // LINT0 of the boot CPU starts as ExtINT, unmasked, so the PIC reaches the CPU before an OS sets up the APIC.
    if (this.id === 0) this.lvt[LVT_LINT0] = DeliveryMode.EXTINT << 8;
    this.icrLow = 0;
    this.icrHigh = 0;
    this.esr = 0;
    this.pendingEsr = 0;
    this.dcr = 0;
    this.initialCount = 0;
    this.irr.fill(0);
    this.isr.fill(0);
    this.tmr.fill(0);
    this.stopTimer();
    this.notify();
  }

  /** IA32_APIC_BASE MSR value (the VMM's RDMSR/WRMSR path). */
  get apicBaseMsr(): number {
    return this.apicBase;
  }

  /** WRMSR IA32_APIC_BASE: only the global enable bit acts; relocation is not supported (the base stays). */
  set apicBaseMsr(value: number) {
    const enable = (value & APIC_BASE_ENABLE) !== 0;
    this.apicBase = ((this.resetBase & ~APIC_BASE_ENABLE) | (enable ? APIC_BASE_ENABLE : 0)) >>> 0;
    if (!enable) {
      this.svr &= ~SVR_ENABLE;
      this.lvt.fill(LVT_MASKED);
      this.stopTimer();
    }
    this.notify();
  }

  private get hardwareEnabled(): boolean {
    return (this.apicBase & APIC_BASE_ENABLE) !== 0;
  }

  private get softwareEnabled(): boolean {
    return this.hardwareEnabled && (this.svr & SVR_ENABLE) !== 0;
  }

  private extIntRouted(): boolean {
    const l = this.lvt[LVT_LINT0];
    return !(l & LVT_MASKED) && ((l >> 8) & 7) === DeliveryMode.EXTINT;
  }

  /** Processor priority: the higher of TPR and the class of the highest in-service vector. */
  get ppr(): number {
    const isrv = Math.max(highest(this.isr), 0);
    return (this.tpr >> 4) >= (isrv >> 4) ? this.tpr & 0xff : isrv & 0xf0;
  }

  /** The highest requested vector the CPU may take now, or -1. */
  private deliverable(): number {
    if (!this.softwareEnabled) return -1;
    const v = highest(this.irr);
    return v >= 0 && v >> 4 > this.ppr >> 4 ? v : -1;
  }

  hasInterrupt(): boolean {
    if (!this.hardwareEnabled) return this.extInt?.hasInterrupt() ?? false;
    if (this.deliverable() >= 0) return true;
    return this.extIntRouted() && (this.extInt?.hasInterrupt() ?? false);
  }

  acknowledge(): number {
    let vector: number;
    if (!this.hardwareEnabled) {
      vector = this.extInt ? this.extInt.acknowledge() : this.svr & 0xff;
    } else {
      const v = this.deliverable();
      if (v >= 0) {
        bitClear(this.irr, v);
        bitSet(this.isr, v);
        vector = v;
      } else if (this.extIntRouted() && this.extInt?.hasInterrupt()) {
        vector = this.extInt.acknowledge();
      } else {
        vector = this.svr & 0xff; // spurious: nothing goes in service
      }
    }
    this.notify();
    return vector;
  }

  /** Re-evaluate after the PIC's INTR changed (the VMM wires pic.onIntr here). */
  extIntChanged(): void {
    this.notify();
  }

  /** Accept a fixed interrupt `vector` into IRR (TMR set for level-triggered). */
  accept(vector: number, levelTriggered: boolean): void {
    if (vector < 16) {
      this.pendingEsr |= ESR_RECEIVE_ILLEGAL;
      this.signalError();
      return;
    }
    if (!this.softwareEnabled) return;
    bitSet(this.irr, vector);
    if (levelTriggered) bitSet(this.tmr, vector);
    else bitClear(this.tmr, vector);
    this.notify();
  }

  receiveMessage(msg: ApicMessage): void {
    if (this.accepts(msg.destination, msg.logical)) this.deliver(msg);
  }

  /** Is this APIC a destination of a message to `destination` (physical ID or logical mask)? */
  accepts(destination: number, logical: boolean): boolean {
    return this.hardwareEnabled && this.matches(destination, logical);
  }

  /** Take a message addressed to this APIC (the bus chose it). */
  deliver(msg: ApicMessage): void {
    this.deliverMode(msg.deliveryMode, msg.vector, msg.levelTriggered);
  }

  private matches(destination: number, logical: boolean): boolean {
    if (!logical) return destination === 0xff || destination === this.id;
    const mine = this.ldr >>> 24;
    if ((this.dfr >>> 28) === 0xf) return (mine & destination) !== 0; // flat model
    return destination >> 4 === mine >> 4 && (destination & mine & 0x0f) !== 0; // cluster model
  }

  private deliverMode(mode: number, vector: number, level: boolean): void {
    switch (mode) {
      case DeliveryMode.FIXED:
      case DeliveryMode.LOWEST:
        this.accept(vector, level);
        break;
      case DeliveryMode.NMI:
        this.onNmi?.();
        break;
      case DeliveryMode.INIT:
        this.onInit?.();
        break;
      case DeliveryMode.STARTUP:
        this.onStartup?.(vector);
        break;
      default: // SMI and ExtINT messages: nothing to do
        break;
    }
  }

  /** Drive LINT1 (conventionally NMI); LINT0 is the ExtINT path and is read through `extInt`. */
  lint1(level: boolean): void {
    const l = this.lvt[LVT_LINT1];
    if (!level || l & LVT_MASKED) return;
    this.deliverMode((l >> 8) & 7, l & 0xff, false);
  }

  read(addr: number, _size: AccessSize): number {
    const off = addr & 0xff0;
    switch (off) {
      case 0x020:
        return (this.id << 24) >>> 0;
      case 0x030:
        return 0x00050014; // version 0x14, six LVT entries
      case 0x080:
        return this.tpr;
      case 0x090:
        return 0; // arbitration priority
      case 0x0a0:
        return this.ppr;
      case 0x0d0:
        return this.ldr;
      case 0x0e0:
        return this.dfr;
      case 0x0f0:
        return this.svr;
      case 0x280:
        return this.esr;
      case 0x300:
        return this.icrLow & ~0x1000; // delivery is instant: never send-pending
      case 0x310:
        return this.icrHigh;
      case 0x380:
        return this.initialCount;
      case 0x390:
        return this.currentCount();
      case 0x3e0:
        return this.dcr;
      default:
        break;
    }
    if (off >= 0x100 && off < 0x280) {
      const set = off < 0x180 ? this.isr : off < 0x200 ? this.tmr : this.irr;
      return set[(off >> 4) & 7];
    }
    const lvt = LVT_OFFSETS.indexOf(off);
    return lvt >= 0 ? this.lvt[lvt] : 0;
  }

  write(addr: number, _size: AccessSize, value: number): void {
    const off = addr & 0xff0;
    switch (off) {
      case 0x080:
        this.tpr = value & 0xff;
        break;
      case 0x0b0:
        this.eoi();
        break;
      case 0x0d0:
        this.ldr = (value & 0xff000000) >>> 0;
        break;
      case 0x0e0:
        this.dfr = (value | 0x0fffffff) >>> 0;
        break;
      case 0x0f0:
        this.svr = value & 0x3ff;
        if (!(value & SVR_ENABLE)) for (let i = 0; i < 7; i++) this.lvt[i] |= LVT_MASKED;
        break;
      case 0x280:
        this.esr = this.pendingEsr;
        this.pendingEsr = 0;
        break;
      case 0x300:
        this.icrLow = value & 0x000ccfff;
        this.sendIpi();
        break;
      case 0x310:
        this.icrHigh = (value & 0xff000000) >>> 0;
        break;
      case 0x380:
        this.initialCount = value >>> 0;
        this.startTimer(this.clock.now());
        break;
      case 0x3e0: {
        const remaining = this.currentCount();
        this.dcr = value & 0x0b;
        if (this.timerDeadline >= 0) this.restartFrom(remaining);
        break;
      }
      default: {
        const lvt = LVT_OFFSETS.indexOf(off);
        if (lvt < 0) return; // read-only or reserved
        let v = (this.lvt[lvt] & ~LVT_WRITABLE[lvt]) | (value & LVT_WRITABLE[lvt]);
        if (!this.softwareEnabled) v |= LVT_MASKED;
        const modeChanged = lvt === LVT_TIMER && ((v ^ this.lvt[lvt]) & 0x60000) !== 0;
        this.lvt[lvt] = v >>> 0;
        if (modeChanged) this.startTimer(this.clock.now());
      }
    }
    this.notify();
  }

  private eoi(): void {
    const v = highest(this.isr);
    if (v < 0) return;
    bitClear(this.isr, v);
    if (bitTest(this.tmr, v)) this.onLevelEoi?.(v);
  }

  private sendIpi(): void {
    const low = this.icrLow;
    const vector = low & 0xff;
    const mode = (low >> 8) & 7;
    const shorthand = (low >> 18) & 3;
    if (mode === DeliveryMode.FIXED && vector < 16) {
      this.pendingEsr |= ESR_SEND_ILLEGAL;
      this.signalError();
      return;
    }
    // INIT level de-assert (level 0, level-triggered) only synchronises arbitration IDs: no effect.
    if (mode === DeliveryMode.INIT && (low & ICR_LEVEL_ASSERT) === 0 && (low & ICR_LEVEL_TRIGGERED) !== 0) return;
    const logical = (low & 0x800) !== 0;
    // IPIs are edge-triggered for fixed delivery; the level bit only matters for INIT de-assert.
    if (this.ipiTarget) {
      this.ipiTarget.sendIpi({ vector, deliveryMode: mode, levelTriggered: false, destination: this.icrHigh >>> 24, logical }, this, shorthand);
      return;
    }
    const toSelf = shorthand === Shorthand.SELF || shorthand === Shorthand.ALL || (shorthand === Shorthand.NONE && this.matches(this.icrHigh >>> 24, logical));
    if (toSelf) this.deliverMode(mode, vector, false);
  }

  private signalError(): void {
    const l = this.lvt[LVT_ERROR];
    if (!(l & LVT_MASKED) && (l & 0xff) >= 16) this.accept(l & 0xff, false);
  }

  private divide(): number {
    const code = ((this.dcr & 8) >> 1) | (this.dcr & 3);
    return code === 7 ? 1 : 2 << code;
  }

  /** Timer ticks and virtual ns per count. */
  private countNs(): number {
    return (this.divide() * 1e9) / LAPIC_TIMER_HZ;
  }

  private timerMode(): number {
    return (this.lvt[LVT_TIMER] >> 17) & 3;
  }

  private currentCount(): number {
    if (this.timerDeadline < 0 || this.initialCount === 0) return 0;
    const elapsed = Math.floor((this.clock.now() - this.timerStartNs) / this.countNs());
    if (this.timerMode() === 1) return this.initialCount - (elapsed % this.initialCount);
    return Math.max(this.initialCount - elapsed, 0);
  }

  private stopTimer(): void {
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    this.timerDeadline = -1;
  }

  private startTimer(now: number): void {
    this.stopTimer();
    if (this.initialCount === 0 || this.timerMode() > 1) return;
    this.timerStartNs = now;
    this.armTimer(now + this.initialCount * this.countNs());
  }

  /** Continue the current period from `remaining` counts at the (new) divide rate. */
  private restartFrom(remaining: number): void {
    this.stopTimer();
    const now = this.clock.now();
    const perCount = this.countNs();
    this.timerStartNs = now - (this.initialCount - remaining) * perCount;
    this.armTimer(now + remaining * perCount);
  }

  private armTimer(deadline: number): void {
    this.timerDeadline = deadline;
    this.timer = this.clock.setTimer(deadline, () => this.expire());
  }

  private expire(): void {
    this.timer = 0;
    const l = this.lvt[LVT_TIMER];
    if (!(l & LVT_MASKED)) this.accept(l & 0xff, false);
    if (this.timerMode() === 1 && this.initialCount > 0) {
      this.timerStartNs = this.timerDeadline;
      this.armTimer(this.timerDeadline + this.initialCount * this.countNs());
    } else {
      this.timerDeadline = -1;
    }
  }

  private notify(): void {
    const now = this.hasInterrupt();
    if (now !== this.intr) {
      this.intr = now;
      this.onIntr?.(now);
    }
  }

  /** In-service vectors as a 256-bit set (for tests and traces). */
  inService(vector: number): boolean {
    return bitTest(this.isr, vector);
  }

  /** Requested vectors as a 256-bit set (for tests and traces). */
  requested(vector: number): boolean {
    return bitTest(this.irr, vector);
  }

  saveState(): object {
    return {
      apicBase: this.apicBase, tpr: this.tpr, svr: this.svr, ldr: this.ldr, dfr: this.dfr, lvt: [...this.lvt],
      icrLow: this.icrLow, icrHigh: this.icrHigh, esr: this.esr, pendingEsr: this.pendingEsr, dcr: this.dcr,
      initialCount: this.initialCount, timerStartNs: this.timerStartNs, timerDeadline: this.timerDeadline,
      irr: [...this.irr], isr: [...this.isr], tmr: [...this.tmr], intr: this.intr,
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const u32 = (k: string): number => r.int(k, 0, 0xffffffff);
    const s = {
      apicBase: u32("apicBase"), tpr: r.int("tpr", 0, 255), svr: r.int("svr", 0, 0x3ff), ldr: u32("ldr"), dfr: u32("dfr"),
      lvt: r.ints("lvt", 7, 0, 0xffffffff), icrLow: u32("icrLow"), icrHigh: u32("icrHigh"), esr: r.int("esr", 0, 255),
      pendingEsr: r.int("pendingEsr", 0, 255), dcr: r.int("dcr", 0, 0x0b), initialCount: u32("initialCount"),
      timerStartNs: r.num("timerStartNs"), timerDeadline: r.num("timerDeadline", -1),
      irr: r.ints("irr", 8, 0, 0xffffffff), isr: r.ints("isr", 8, 0, 0xffffffff), tmr: r.ints("tmr", 8, 0, 0xffffffff),
      intr: r.bool("intr"),
    };
    this.stopTimer();
    this.apicBase = s.apicBase;
    this.tpr = s.tpr;
    this.svr = s.svr;
    this.ldr = s.ldr;
    this.dfr = s.dfr;
    this.lvt.set(s.lvt);
    this.icrLow = s.icrLow;
    this.icrHigh = s.icrHigh;
    this.esr = s.esr;
    this.pendingEsr = s.pendingEsr;
    this.dcr = s.dcr;
    this.initialCount = s.initialCount;
    this.timerStartNs = s.timerStartNs;
    this.irr.set(s.irr);
    this.isr.set(s.isr);
    this.tmr.set(s.tmr);
    this.intr = s.intr;
    if (s.timerDeadline >= 0) this.armTimer(s.timerDeadline);
  }
}
