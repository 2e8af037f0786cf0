// Console driver protocol. Output portal: [channel, byteCount, bytes packed 4 per word
// (little-endian)] → [status]. The driver calls the VMM's input portal with [byteCount, bytes
// packed 4 per word] when the host typed something.

/** Output channels of the console driver. */
export const ConsoleChannel = { SERIAL0: 0, DEBUGCON: 1 } as const;

/** Selectors the root task fills in the driver's object space. */
export const ConsoleSel = {
  /** The interrupt semaphore of the console GSI (DOWN right). */
  INPUT_IRQ: 1,
  /** The VMM's input portal (CALL right), once the VMM published it. */
  VMM_INPUT: 2,
} as const;
