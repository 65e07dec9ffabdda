//! A BPF array map's values mapped read-only into userspace (the map was created
//! `BPF_F_MMAPABLE`): a program's writes are read there without a system call per read.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::{self, NonNull},
    sync::atomic::AtomicU64,
};

use aya::maps::MapData;

pub struct MappedWords {
    words: NonNull<AtomicU64>,
    len: usize,
    /// Keeps the map's file descriptor for as long as it is mapped.
    _map: MapData,
}

// SAFETY: the mapping is only read, through atomics, and freed once, on drop.
unsafe impl Send for MappedWords {}
// SAFETY: as above; every access goes through `&[AtomicU64]`.
unsafe impl Sync for MappedWords {}

impl MappedWords {
    /// Maps the first `len` 8-byte words of `map`'s values.
    pub fn map(map: MapData, len: usize) -> io::Result<MappedWords> {
        let bytes = len * size_of::<u64>();
        // SAFETY: a new shared read-only mapping of the map's value area, checked below.
        let mapped = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedWords {
            words: NonNull::new(mapped.cast()).expect("mmap succeeded"),
            len,
            _map: map,
        })
    }

    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `len` words mapped, page-aligned, for the life of self; atomic loads of
        // read-only memory are sound, and only loads are made through a shared reference.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), self.len) }
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.len * size_of::<u64>()) };
    }
}
