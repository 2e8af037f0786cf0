// Portal: an entry point into a PD, served by a local EC. The MTD selects the vCPU state of a
// VM exit; the id (set with pt_ctrl) lets the server tell its clients apart.

import { ObjectType } from "../capabilities/index.js";
import type { Ec } from "./ec.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";

export class Pt extends KernelObject {
  readonly type = ObjectType.PT;
  id = 0;

  constructor(
    payer: QuotaAccount,
    readonly ec: Ec,
    public mtd: number,
  ) {
    super(payer, KernelMemoryCost.PT);
  }
}
