//! The machine: CPU, memory, the disk's fdatasync latency, this process's peak RSS.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::BoxError;
use crate::stats::percentile;

/// What the benchmark ran on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// CPUs this process may use.
    pub(crate) logical_cpus: usize,
    /// MemTotal, MiB.
    pub(crate) mem_total_mib: u64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// Where the SQLite files and the fsync probe live.
    pub(crate) bench_dir: String,
    /// Filesystem type of that directory's mount.
    pub(crate) filesystem: String,
    /// Device of that mount.
    pub(crate) device: String,
}

impl Machine {
    /// Reads /proc for the machine and the mount holding `dir`.
    pub(crate) fn read(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let (device, filesystem) = mount_of(&dir);
        Machine {
            cpu_model,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_mib,
            kernel,
            bench_dir: dir.display().to_string(),
            filesystem,
            device,
        }
    }
}

/// The (device, fs type) of the longest mount point containing `dir`.
fn mount_of(dir: &Path) -> (String, String) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let point = fields.next()?;
            let fs = fields.next()?;
            dir.starts_with(point)
                .then(|| (point.len(), device.to_owned(), fs.to_owned()))
        })
        .max_by_key(|(len, ..)| *len)
        .map_or_else(
            || ("unknown".to_owned(), "unknown".to_owned()),
            |(_, d, f)| (d, f),
        )
}

/// A `kB` field of /proc/meminfo or /proc/self/status.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time this process has used so far (user + system, all threads, including exited
/// ones), in seconds; 10 ms resolution (USER_HZ).
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's OS threads right now.
pub(crate) fn threads() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// This process's resident set right now (VmRSS), MiB.
pub(crate) fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    kib_field(&status, "VmRSS:").map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// This process's peak resident set (VmHWM), MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    kib_field(&status, "VmHWM:").map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// The disk's durability floor: how long a 4 KiB write plus `fdatasync` takes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FsyncStats {
    /// Samples per variant (over all rounds).
    pub(crate) iterations: usize,
    /// Overwriting a preallocated file, one 4 KiB block per `fdatasync`: median µs.
    pub(crate) median_us: f64,
    /// Same, 99th percentile µs.
    pub(crate) p99_us: f64,
    /// `1 / median`.
    pub(crate) ops_per_s: f64,
    /// Overwriting with `fsync` (`File::sync_all`, which also flushes the inode's new
    /// mtime; SQLite calls `fsync` when built without `HAVE_FDATASYNC`): median µs.
    pub(crate) fsync_median_us: f64,
    /// Appending to a growing file (its size changes too), `fdatasync`: median µs.
    pub(crate) append_median_us: f64,
    /// What one SQLite commit of a step writes to a reused WAL: 4 frames of 24 + 4,096
    /// bytes, then `fsync`: median µs.
    pub(crate) wal_commit_median_us: f64,
}

/// The per-field median of several measurements (`None` when there are none).
pub(crate) fn median_fsync(all: &[FsyncStats]) -> Option<FsyncStats> {
    let first = all.first()?;
    let median = |field: fn(&FsyncStats) -> f64| {
        let mut values: Vec<f64> = all.iter().map(field).collect();
        percentile(&mut values, 50.0)
    };
    let median_us = median(|f| f.median_us);
    Some(FsyncStats {
        iterations: first.iterations * all.len(),
        median_us,
        p99_us: median(|f| f.p99_us),
        ops_per_s: 1e6 / median_us,
        fsync_median_us: median(|f| f.fsync_median_us),
        append_median_us: median(|f| f.append_median_us),
        wal_commit_median_us: median(|f| f.wal_commit_median_us),
    })
}

/// One 4 KiB page.
const PAGE: usize = 4096;
/// A WAL frame: a 24-byte header and a page.
const FRAME: usize = 24 + PAGE;
/// Frames one step's commit writes (measured with `strace`: ~8 `pwrite`s per commit, a
/// header and a page per frame).
const FRAMES_PER_COMMIT: usize = 4;

/// Measures `iterations` writes + sync in `dir`: 4 KiB overwriting a preallocated file
/// with `fdatasync` (what fio's fdatasync test does), the same with `fsync`, 4 KiB appended
/// to a new file with `fdatasync` (a growing log), and a WAL-like commit (4 frames
/// overwritten, `fsync`).
pub(crate) fn measure_fsync(dir: &Path, iterations: usize) -> Result<FsyncStats, BoxError> {
    let path = dir.join("fsync-probe.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let chunk = vec![0xa5u8; FRAME * FRAMES_PER_COMMIT];
    for _ in 0..iterations {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let mut overwrite = sync_loop(&mut file, iterations, &chunk[..PAGE], true, false)?;
    let mut full = sync_loop(&mut file, iterations, &chunk[..PAGE], true, true)?;
    let mut wal = sync_loop(&mut file, iterations, &chunk, true, true)?;
    drop(file);

    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    file.sync_all()?;
    let mut append = sync_loop(&mut file, iterations, &chunk[..PAGE], false, false)?;
    drop(file);
    std::fs::remove_file(&path)?;

    let median_us = percentile(&mut overwrite, 50.0);
    Ok(FsyncStats {
        iterations,
        median_us,
        p99_us: percentile(&mut overwrite, 99.0),
        ops_per_s: 1e6 / median_us,
        fsync_median_us: percentile(&mut full, 50.0),
        append_median_us: percentile(&mut append, 50.0),
        wal_commit_median_us: percentile(&mut wal, 50.0),
    })
}

/// `iterations` × (write `bytes` + sync), from the start of `file` when `rewind`, with
/// `fsync` when `full` (else `fdatasync`); µs each.
fn sync_loop(
    file: &mut File,
    iterations: usize,
    bytes: &[u8],
    rewind: bool,
    full: bool,
) -> Result<Vec<f64>, BoxError> {
    if rewind {
        file.seek(SeekFrom::Start(0))?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        file.write_all(bytes)?;
        if full {
            file.sync_all()?;
        } else {
            file.sync_data()?;
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}
