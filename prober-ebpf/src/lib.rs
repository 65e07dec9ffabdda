#![no_std]
// Empty: this crate's product is the `prober` eBPF binary. The library target exists so that
// the userspace crate can name this package as a build dependency (aya-build's convention).
