"""Tests of fraudlab.data: the BankSim format, parsing, validation and quarantine, and the generator."""
