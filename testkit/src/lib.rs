//! Test tools for reprise workflows. This first version offers engines over temporary
//! stores and event-log helpers; `TestEnv`, virtual time, stubs and crash-and-replay
//! property tests follow.
