//! The topology file format (TOML) and its validation into a checked [`crate::model::Model`].
//! (Being written: see the topology worktree.)
