//! Running out of space on a pool (issue 20).
