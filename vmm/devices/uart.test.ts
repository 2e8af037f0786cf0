// Tests of the 16550A UART: Linux's probe, FIFOs and trigger levels, interrupt identification,
// the receive timeout, loopback, host side and save/load.

import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { IrqLine } from "./irq.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";
import { IIR, Uart16550 } from "./uart.js";

const B = 0x3f8;
const [RBR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR] = [0, 1, 2, 3, 4, 5, 6, 7].map((o) => B + o);

function setup(now = 0) {
  const clock = new ManualClock(now);
  const sink = new RecordingSink();
  const line = new IrqLine([{ sink, pin: 4 }]);
  const uart = new Uart16550(clock, line);
  const io = new IoBus();
  uart.attach(io);
  const sent: number[] = [];
  uart.onTransmit = (b) => sent.push(b);
  const r = (p: number): number => io.read(p, 1);
  const w = (p: number, v: number): void => io.write(p, 1, v);
  return { uart, io, clock, sink, line, sent, r, w };
}

describe("16550A UART", () => {
  it("passes Linux's autoconfig: IER scratch, loopback MSR, FIFO and 16550A identification", () => {
    const { r, w } = setup();
    w(IER, 0);
    expect(r(IER) & 0x0f).toBe(0);
    w(IER, 0x0f);
    expect(r(IER) & 0x0f).toBe(0x0f);
    w(IER, 0xf0);
    expect(r(IER)).toBe(0); // the upper bits do not exist on a 16550A
    w(MCR, 0x10 | 0x0a);
    expect(r(MSR) & 0xf0).toBe(0x90);
    w(MCR, 0);
    w(SCR, 0xa5);
    expect(r(SCR)).toBe(0xa5);
    w(LCR, 0);
    w(IIR_FCR, 0x01);
    expect(r(IIR_FCR) >> 6).toBe(3);
    w(IIR_FCR, 0x01 | 0x20); // 64-byte FIFO request is ignored
    expect(r(IIR_FCR) >> 5).toBe(6);
    expect(r(LSR)).toBe(0x60);
  });

  it("programs the divisor through DLAB without touching RBR/IER", () => {
    const { r, w, sent } = setup();
    w(IER, 0x05);
    w(LCR, 0x83);
    w(RBR, 0x01);
    w(IER, 0x00);
    expect(r(RBR)).toBe(0x01);
    expect(r(IER)).toBe(0x00);
    w(LCR, 0x03);
    expect(r(IER)).toBe(0x05);
    expect(sent).toEqual([]);
  });

  it("re-asserts THRE when the interrupt is enabled (Linux's UART_BUG_THRE test) and clears it on IIR read", () => {
    const { r, w, sink } = setup();
    w(MCR, 0x08); // OUT2 connects the interrupt
    w(IER, IER_THRE_ONLY);
    expect(sink.level(4)).toBe(true);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.THR_EMPTY);
    expect(sink.level(4)).toBe(false);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.NONE);
    w(IER, 0);
    w(IER, IER_THRE_ONLY);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.THR_EMPTY);
  });

  it("transmits to the host and signals THRE again after each write", () => {
    const { r, w, sent } = setup();
    w(MCR, 0x08);
    w(IER, 0x02);
    r(IIR_FCR);
    for (const c of "hi\n") w(RBR, c.charCodeAt(0));
    expect(String.fromCharCode(...sent)).toBe("hi\n");
    expect(r(LSR) & 0x60).toBe(0x60);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.THR_EMPTY);
  });

  it("raises received-data at the FIFO trigger level, a timeout below it, and ranks line status first", () => {
    const { r, w, uart, clock, sink } = setup();
    w(LCR, 0x03);
    w(IIR_FCR, 0x81); // FIFO on, trigger 8
    w(MCR, 0x08);
    w(IER, 0x05);
    uart.receive([1, 2, 3]);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.NONE);
    const charNs = Math.ceil((10 * 12 * 1e9) / 115200);
    clock.advance(4 * charNs - 1);
    expect(sink.level(4)).toBe(false);
    clock.advance(1);
    expect(sink.level(4)).toBe(true);
    expect(r(IIR_FCR)).toBe(0xc0 | IIR.RX_TIMEOUT);
    expect(r(RBR)).toBe(1);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.NONE); // a read restarts the timeout
    uart.receive([4, 5, 6, 7, 8, 9]);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.RX_DATA);
    const got: number[] = [];
    while (r(LSR) & 1) got.push(r(RBR));
    expect(got).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(sink.level(4)).toBe(false);

    w(MCR, 0x18); // loopback: overrun the FIFO
    for (let i = 0; i < 17; i++) w(RBR, i);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.LINE_STATUS);
    expect(r(LSR) & 0x03).toBe(0x03);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.RX_DATA);
  });

  it("keeps host input queued beyond the FIFO and hands it over as the guest reads", () => {
    const { r, uart } = setup();
    uart.receive(new TextEncoder().encode("hello, world"));
    expect(r(LSR) & 1).toBe(1);
    expect(uart.queuedInput).toBe(11); // non-FIFO mode holds one byte
    let s = "";
    while (r(LSR) & 1) s += String.fromCharCode(r(RBR));
    expect(s).toBe("hello, world");
  });

  it("loops transmitted bytes back without reaching the host or the IRQ line", () => {
    const { r, w, sent, sink, uart } = setup();
    w(IIR_FCR, 0x07);
    w(MCR, 0x18);
    w(IER, 0x01);
    uart.receive([0x99]); // external input waits while in loopback
    w(RBR, 0x41);
    expect(sent).toEqual([]);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.RX_DATA);
    expect(sink.level(4)).toBe(false);
    expect(r(RBR)).toBe(0x41);
    expect(r(LSR) & 1).toBe(0);
    w(MCR, 0x08);
    expect(r(RBR)).toBe(0x99);
  });

  it("reports modem status deltas and their interrupt", () => {
    const { r, w, uart } = setup();
    w(MCR, 0x08);
    w(IER, 0x08);
    expect(r(MSR)).toBe(0xb0);
    uart.setModemLines(0xa0); // CTS drops
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.MODEM_STATUS);
    expect(r(MSR)).toBe(0xa1);
    expect(r(IIR_FCR) & 0x0f).toBe(IIR.NONE);
  });

  it("reproduces FIFO contents, pending interrupts and the timeout after save → msgpack → load", () => {
    const a = setup(100);
    a.w(IIR_FCR, 0xc1); // trigger 14
    a.w(MCR, 0x0b);
    a.w(IER, 0x07);
    a.uart.receive(new Uint8Array(20).map((_, i) => 0x30 + i));
    a.r(RBR);
    a.clock.advance(1000);
    const b = setup(a.clock.now());
    b.uart.loadState(throughMsgpack(a.uart.saveState()));
    const trace = (s: ReturnType<typeof setup>): number[] => {
      const out: number[] = [];
      for (let i = 0; i < 25; i++) {
        s.clock.advance(150_000);
        out.push(Number(s.line.level), s.r(IIR_FCR), s.r(LSR));
        if (i % 3 === 0) out.push(s.r(RBR));
      }
      s.w(RBR, 0x55);
      return out.concat(s.sent);
    };
    expect(trace(b)).toEqual(trace(a));
  });

  it("refuses a malformed state", () => {
    const { uart } = setup();
    const good = uart.saveState();
    expect(() => uart.loadState({ ...good, rx: new Uint8Array(17) })).toThrow(DeviceStateError);
    expect(() => uart.loadState({ ...good, ier: 0x10 })).toThrow(DeviceStateError);
  });
});

const IER_THRE_ONLY = 0x02;
