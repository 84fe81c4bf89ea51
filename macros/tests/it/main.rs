//! Integration tests of `reprise-macros` (one test binary): trybuild UI tests of every
//! macro error and of the hygiene/escape-hatch cases that must compile, and end-to-end
//! runs of macro-generated workflows on an in-memory engine.

mod run;
mod ui;
