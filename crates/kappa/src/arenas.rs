//! glibc's allocator gives each thread that allocates its own arena, up to eight per core, and an
//! arena keeps what its threads freed for them to reuse. A replay allocates on its decoding and
//! I/O threads (tokio's blocking pool: about fifty threads while 64 archive objects are fetched
//! at once) and frees on the writers', so sixteen arenas each held a share of the peak: 265–275
//! MiB peak RSS on an archive of 10,000-record snappy files, against 222 MiB with two arenas, at
//! the same speed (docs/performance.md, ADR 0012). The limit is glibc's `MALLOC_ARENA_MAX`, read
//! only when the process starts, so the binary sets it for itself by re-executing once (same
//! process id, arguments, descriptors and environment), before anything else runs. A limit already in the
//! environment is kept; glibc's tunable `GLIBC_TUNABLES=glibc.malloc.arena_max=N` also wins.

/// Arenas: one per core the process may use, at least two (more threads than arenas then share
/// them; with as many as cores, no core waits for another's arena lock for long).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"))
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let Some(name) = args.next() else {
        return;
    };
    let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    // Returns only if the exec failed (the binary was replaced or removed since it started):
    // then this process goes on with glibc's default arenas.
    let _ = std::process::Command::new(exe)
        .arg0(name)
        .args(args)
        .env(VAR, arenas.to_string())
        .exec();
}

/// Other platforms' allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit() {}
