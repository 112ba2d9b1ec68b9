//! The global allocator: Redis's own allocator inside a server, the system's
//! elsewhere.
//!
//! Inside Redis every Rust allocation (a sliding-window log, say) must go
//! through `RedisModule_Alloc`, so that `used_memory`, `maxmemory` and
//! `MEMORY USAGE` see it. The same crate is also linked into unit tests,
//! property tests and criterion benches, where no server exists; there the
//! system allocator serves. The choice is made once: the Redis API pointers
//! are filled in by `RedisModule_Init`, the first thing `RedisModule_OnLoad`
//! does, before this crate allocates anything, and they never change after.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::raw;

/// Delegates to `RedisModule_Alloc`/`RedisModule_Free` when loaded in a
/// server and to [`System`] otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModuleAlloc;

/// Round the size up to the alignment: the server's allocator (jemalloc)
/// aligns each size class to its size, so this gives the alignment asked for.
#[inline]
fn aligned_size(layout: Layout) -> usize {
    (layout.size() + layout.align() - 1) & !(layout.align() - 1)
}

unsafe impl GlobalAlloc for ModuleAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the pointers are set once at load time and valid for the
        // life of the process; System's contract is forwarded unchanged.
        unsafe {
            match raw::RedisModule_Alloc {
                Some(alloc) => alloc(aligned_size(layout)).cast(),
                None => System.alloc(layout),
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            match raw::RedisModule_Free {
                Some(free) => free(ptr.cast()),
                None => System.dealloc(ptr, layout),
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            match raw::RedisModule_Realloc {
                Some(realloc) => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    realloc(ptr.cast(), aligned_size(new_layout)).cast()
                }
                None => System.realloc(ptr, layout, new_size),
            }
        }
    }
}
