import { expect, it } from "vitest";
import { ExitReason } from "../../../kernel/vcpu.js";
import { CODE, Machine } from "../../../vmm/x86/testing.js";
it("smoke", () => {
  for (const arena of [false, true]) {
    const m = new Machine(8 << 20, 0, arena);
    m.flat(0);
    m.code32(`mov ecx, 1000
      xor eax, eax
      mov ebx, 0x20000
      .l: add eax, ecx
      mov [ebx], eax
      movzx edx, word [ebx]
      shr dx, 3
      lea esi, [edx + eax*2]
      cmp esi, eax
      jb .s
      inc edi
      .s: push esi
      pop edx
      dec ecx
      jnz .l
      hlt`);
    m.engine.translateAfter = 2;
    expect(m.run(1e6)).toBe(ExitReason.HLT);
    const c = m.engine.cpu;
    console.log(arena, Array.from(c.r), c.retired, c.flags, c.lzMask, c.lzA, c.lzB, c.lzR, m.engine.blocks.stats.translated, m.engine.blocks.stats.wasm, m.engine.cpu.lastError);
  }
});
