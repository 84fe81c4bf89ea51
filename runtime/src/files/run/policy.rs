//! Per-step policies: `when`, `timeout`, `retry`, `error_handling` (stop, continue,
//! fallback, rollback) and `output_variable`.
