//! Test harness for skiff's end-to-end suite: starts a real `skiff up` on a
//! temporary data dir and a free port, and hands out clients for it.
