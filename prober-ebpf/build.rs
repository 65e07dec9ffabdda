//! Linker options for the eBPF programs.
//!
//! bpf-linker asks LLVM by default to keep memcpy's loads and stores in order, which also
//! stops LLVM from expanding memset and memmove: they become calls to byte loops whose
//! variable-offset pointer arithmetic the verifier accepts only with CAP_PERFMON. Expanded,
//! every fixed-size copy and fill is plain loads and stores, so CAP_BPF is enough.
fn main() {
    println!("cargo::rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
