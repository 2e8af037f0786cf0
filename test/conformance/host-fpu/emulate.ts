// Runs a differential test case on the emulated x87 alone (TestHost stands in for the core).
import { loadState, storeState } from "../../../vmm/x86/fpu/images.js";
import { runX87, TestHost } from "../../../vmm/x86/fpu/test-host.js";
import { X87 } from "../../../vmm/x86/fpu/x87.js";
import { CASE_DATA_SIZE, CODE_ADDR, DATA_ADDR, type FpuCase, type FpuResult, IMAGE_SIZE } from "./case.js";

export function emulate(c: FpuCase): FpuResult {
  const x = new X87();
  const memory = new Uint8Array(4096);
  memory.set(c.data);
  const host = new TestHost(memory, DATA_ADDR);
  host.regs[3] = DATA_ADDR;
  host.flags = (c.eflags & 0x8d5) | 2;
  loadState(x, c.image, true, false);
  const outcome = runX87(x, host, c.code, CODE_ADDR);
  const image = new Uint8Array(IMAGE_SIZE);
  storeState(x, image, true, false);
  const done = outcome.vector < 0;
  return {
    status: done ? 0 : outcome.vector === 16 ? 1 : 2,
    offset: done ? 0 : outcome.offset,
    image,
    eflags: done ? host.flags : 0,
    eax: done ? host.regs[0] >>> 0 : 0,
    data: memory.slice(0, CASE_DATA_SIZE),
  };
}
