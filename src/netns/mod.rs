//! Network namespaces and links over netlink. (Being written: see the netns worktree.)
