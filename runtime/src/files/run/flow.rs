//! Control-flow steps: `if`, `switch`, `for_each`, `while`, `map`, `filter`, `reduce`,
//! `parallel`, `try`, `set`, `fail`, `return`.
