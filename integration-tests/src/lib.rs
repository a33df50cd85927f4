//! Helpers for end-to-end tests: locate the kappa binary, run it, run Python query engines.
