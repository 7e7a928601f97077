"""Helpers the tests share: kubectl, the operator process, cases, fakes (never test modules)."""
