// Runs a differential test case through the whole x86 core (createX86Engine) with the x87 unit
// plugged in: flat 32-bit protected mode at ring 3, code and data at the harness's addresses,
// CS/DS selectors as Linux gives the native side, every exception an exit.
import { GuestMemory, MemRights, PAGE_SIZE } from "../../../kernel/guest-memory.js";
import { ExitReason, Mtd, type VcpuExitHandler, VcpuState } from "../../../kernel/vcpu.js";
import { loadState, storeState } from "../../../vmm/x86/fpu/images.js";
import { X87 } from "../../../vmm/x86/fpu/x87.js";
import { createX86Engine, type X86Engine } from "../../../vmm/x86/index.js";
import { CASE_DATA_SIZE, CODE_ADDR, DATA_ADDR, type FpuCase, type FpuResult, IMAGE_SIZE } from "./case.js";

const HLT = 0xf4;
const IN_MTD = Mtd.ALL & ~(Mtd.FPU | Mtd.QUAL);
const OUT_MTD = Mtd.GPR_ACDB | Mtd.GPR_BSD | Mtd.ESP | Mtd.EIP_LEN | Mtd.EFLAGS | Mtd.QUAL;

export class EngineSide {
  private readonly memory = new GuestMemory();
  private readonly code = new Uint8Array(PAGE_SIZE);
  private readonly data = new Uint8Array(PAGE_SIZE);
  private readonly engine: X86Engine;
  readonly x87 = new X87();
  /** Vector of the exception that ended the last run, -1 when it completed. */
  lastVector = -1;
  private readonly exits: VcpuExitHandler = { stopRequested: false, exit: () => false };

  constructor() {
    this.memory.map(DATA_ADDR >>> 12, this.data, 0, MemRights.ALL);
    this.mapCode();
    // Plugging the unit in: the core has no factory option for it yet (see the report).
    this.engine = createX86Engine(this.memory) as X86Engine;
    this.engine.cpu.fpu = this.x87;
  }

  private mapCode(): void {
    this.memory.unmap(CODE_ADDR >>> 12);
    this.memory.map(CODE_ADDR >>> 12, this.code, 0, MemRights.ALL);
  }

  /** Run a case; `cr0` defaults to PE|ET|NE. The unit stays reachable as `fpu` for tests. */
  run(c: FpuCase, cr0 = 0x31): FpuResult {
    this.code.fill(HLT);
    this.code.set(c.code);
    this.mapCode();
    this.data.fill(0);
    this.data.set(c.data);
    this.x87.finit();
    loadState(this.x87, c.image, true, false);
    const s = new VcpuState();
    s.ebx = DATA_ADDR;
    s.esp = DATA_ADDR + PAGE_SIZE;
    s.eip = CODE_ADDR;
    s.eflags = (c.eflags & 0x8d5) | 2;
    s.cs = { selector: 0x23, base: 0, limit: 0xffffffff, attributes: 0xc0fb };
    const data = () => ({ selector: 0x2b, base: 0, limit: 0xffffffff, attributes: 0xc0f3 });
    s.ss = data();
    s.ds = data();
    s.es = data();
    s.fs = data();
    s.gs = data();
    s.ldtr = { selector: 0, base: 0, limit: 0, attributes: 0x10000 };
    s.tr = { selector: 0, base: 0, limit: 0x67, attributes: 0x8b };
    s.cr0 = cr0;
    s.exceptionBitmap = 0xffffffff;
    this.engine.loadState(IN_MTD, s);
    const reason = this.engine.run(10_000, this.exits);
    const out = new VcpuState();
    this.engine.saveState(OUT_MTD, out);
    const image = new Uint8Array(IMAGE_SIZE);
    storeState(this.x87, image, true, false);
    const offset = (out.eip - CODE_ADDR) >>> 0;
    // HLT at ring 3 raises #GP at the end of the code: that is completion.
    const done = reason === ExitReason.EXCEPTION && out.qual.address === 13 && offset === c.code.length;
    if (!done && reason !== ExitReason.EXCEPTION) throw new Error(`engine stopped with ${ExitReason[reason] ?? reason}`);
    this.lastVector = done ? -1 : out.qual.address;
    return {
      status: done ? 0 : out.qual.address === 16 ? 1 : 2,
      offset: done ? 0 : offset,
      image,
      eflags: done ? out.eflags : 0,
      eax: done ? out.eax >>> 0 : 0,
      data: this.data.slice(0, CASE_DATA_SIZE),
    };
  }
}
