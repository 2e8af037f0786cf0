// The APIC bus of a VM: the local APICs of its vCPUs and the I/O APIC, passing interrupt messages.
//
// A message goes to every local APIC its destination names (physical APIC ID, 0xFF for all, or a
// logical mask) or its ICR shorthand (self, all, all but self). Lowest-priority delivery picks one
// of them: the lowest processor priority, the lowest APIC ID among equals, so that a run is
// reproducible (hardware's tie-breaking rotates; no guest depends on which).

import { DeliveryMode, Shorthand, type ApicMessage, type ApicMessageTarget, type IpiTarget, type LocalApic } from "./lapic.js";

export class ApicBus implements ApicMessageTarget, IpiTarget {
  /** The local APICs by APIC ID (vCPU index). */
  constructor(readonly lapics: readonly LocalApic[]) {
    for (const l of lapics) l.ipiTarget = this;
  }

  /** A message from the I/O APIC (or any sender without a shorthand). */
  receiveMessage(msg: ApicMessage): void {
    this.deliver(msg, this.lapics.filter((l) => l.accepts(msg.destination, msg.logical)));
  }

  /** An IPI written to `from`'s ICR. */
  sendIpi(msg: ApicMessage, from: LocalApic, shorthand: number): void {
    switch (shorthand) {
      case Shorthand.SELF:
        return this.deliver(msg, [from]);
      case Shorthand.ALL:
        return this.deliver(msg, this.lapics.filter(enabled));
      case Shorthand.ALL_BUT_SELF:
        return this.deliver(msg, this.lapics.filter((l) => l !== from && enabled(l)));
      default:
        return this.receiveMessage(msg);
    }
  }

  private deliver(msg: ApicMessage, targets: readonly LocalApic[]): void {
    if (msg.deliveryMode === DeliveryMode.LOWEST && targets.length > 1) {
      let chosen = targets[0];
      for (const l of targets) if (l.ppr < chosen.ppr) chosen = l;
      chosen.deliver(msg);
      return;
    }
    for (const l of targets) l.deliver(msg);
  }
}

/** A globally disabled APIC (IA32_APIC_BASE bit 11 clear) takes no messages, not even broadcasts. */
const enabled = (l: LocalApic): boolean => l.accepts(0xff, false);
