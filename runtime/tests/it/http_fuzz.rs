//! (being written: issue 12, hardening)
