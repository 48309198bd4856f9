"""The input data: BankSim's format and vocabulary (:mod:`.banksim`), parsing, validation and quarantine
(:mod:`.parsing`), and the synthetic generator with the public file's statistics (:mod:`.generator`)."""
