//! What the load tool shares with its criterion benchmarks (`benches/`): the data of its
//! scenarios.

pub mod fixtures;
