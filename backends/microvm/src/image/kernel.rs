//! Finding the guest kernel: an explicit path, $ISOBOX_KERNEL, the cache, a freshly
//! provisioned Debian cloud kernel, or the host's own — in that order.

use std::fmt;
use std::path::{Path, PathBuf};

use super::bzimage::{self, read_head};
use super::datadir::{data_dir, kernels_dir};
use super::provision;
use crate::error::{MicrovmError, Result};

/// Where the kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSource {
    /// `--kernel PATH`.
    Flag,
    /// `$ISOBOX_KERNEL`.
    Env,
    /// A kernel provisioned earlier, found in the data directory.
    Cache,
    /// Downloaded and unpacked just now.
    Provisioned,
    /// The host's `/boot/vmlinuz-$(uname -r)`.
    HostBoot,
}

impl fmt::Display for KernelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelSource::Flag => "--kernel",
            KernelSource::Env => "$ISOBOX_KERNEL",
            KernelSource::Cache => "cache",
            KernelSource::Provisioned => "provisioned from linux-image-cloud-amd64",
            KernelSource::HostBoot => "host /boot",
        })
    }
}

/// The kernel's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed x86-64 ELF (loadable directly, PVH entry when it has the note).
    Vmlinux,
    /// A compressed x86 boot image ("HdrS" setup header).
    BzImage,
}

impl fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelFormat::Vmlinux => "vmlinux (ELF x86-64)",
            KernelFormat::BzImage => "bzImage",
        })
    }
}

/// A usable guest kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    pub path: PathBuf,
    pub source: KernelSource,
    pub format: KernelFormat,
    /// The kernel release ("6.1.0-26-cloud-amd64") when known.
    pub release: Option<String>,
    pub size_bytes: u64,
}

impl fmt::Display for KernelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel:  {}", self.path.display())?;
        writeln!(f, "source:  {}", self.source)?;
        writeln!(f, "format:  {}", self.format)?;
        writeln!(
            f,
            "release: {}",
            self.release.as_deref().unwrap_or("unknown")
        )?;
        write!(
            f,
            "size:    {} bytes ({:.1} MiB)",
            self.size_bytes,
            self.size_bytes as f64 / 1048576.0
        )
    }
}

/// How [`resolve_kernel`] may look for a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The data directory holding `kernels/` (default: [`data_dir`]).
    pub data_dir: PathBuf,
    /// `$ISOBOX_KERNEL` (default: read from the environment).
    pub env_kernel: Option<PathBuf>,
    /// Download a kernel with apt-get when none is found (default: true).
    pub provision: bool,
    /// Fall back to the host's /boot kernel (default: true).
    pub host_boot: bool,
    /// Print download and unpack progress on stderr (default: true).
    pub progress: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            data_dir: data_dir(),
            env_kernel: std::env::var_os("ISOBOX_KERNEL")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            provision: true,
            host_boot: true,
            progress: true,
        }
    }
}

impl ResolveOptions {
    /// Looks only for what is already there: no download (for `isobox check`).
    pub fn no_provision() -> Self {
        ResolveOptions {
            provision: false,
            ..Self::default()
        }
    }
}

fn not_a_kernel(path: &Path, why: impl fmt::Display) -> MicrovmError {
    MicrovmError::Kernel {
        path: path.to_path_buf(),
        reason: format!("not a Linux kernel: {why}"),
    }
}

impl KernelInfo {
    /// This kernel as an uncompressed vmlinux, which boots without running the decompressor
    /// (slow when it is emulated). A bzImage is decompressed once into
    /// `<data>/kernels/extracted/`, keyed by its path, size and modification time; later calls
    /// reuse that file.
    pub fn to_vmlinux(&self, data_dir: &Path) -> Result<KernelInfo> {
        if self.format == KernelFormat::Vmlinux {
            return Ok(self.clone());
        }
        let meta = std::fs::metadata(&self.path).map_err(|e| MicrovmError::Kernel {
            path: self.path.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        let key = {
            use std::os::unix::fs::MetadataExt;
            let mut h = Fnv::default();
            h.write(self.path.as_os_str().as_encoded_bytes());
            h.write(&meta.len().to_le_bytes());
            h.write(&meta.mtime().to_le_bytes());
            h.write(&meta.mtime_nsec().to_le_bytes());
            h.0
        };
        let dir = kernels_dir(data_dir).join("extracted");
        let out = dir.join(format!(
            "vmlinux-{}-{key:016x}",
            self.release.as_deref().unwrap_or("unknown")
        ));
        if !out.is_file() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| MicrovmError::io(format!("create {}", dir.display()), e))?;
            bzimage::extract_vmlinux(&self.path, &out)?;
        }
        let mut info = inspect_kernel(&out, self.source)?;
        info.release = self.release.clone();
        Ok(info)
    }
}

/// FNV-1a: a stable, dependency-free hash for cache keys.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Checks that `path` is an x86-64 ELF vmlinux or a bzImage and describes it.
pub fn inspect_kernel(path: &Path, source: KernelSource) -> Result<KernelInfo> {
    let meta = std::fs::metadata(path).map_err(|e| MicrovmError::Kernel {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    if !meta.is_file() {
        return Err(not_a_kernel(path, "not a regular file"));
    }
    let head = read_head(path, 64 * 1024).map_err(|e| MicrovmError::Kernel {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    let name_release = release_from_name(path);
    let (format, release) = if head.starts_with(b"\x7fELF") {
        check_elf(&head).map_err(|why| not_a_kernel(path, why))?;
        (KernelFormat::Vmlinux, name_release)
    } else if bzimage::is_bzimage(&head) {
        let hdr = bzimage::parse_setup_header(&head).map_err(|why| not_a_kernel(path, why))?;
        (KernelFormat::BzImage, hdr.release().or(name_release))
    } else {
        return Err(not_a_kernel(
            path,
            "neither an ELF vmlinux nor a bzImage (no \"HdrS\" at 0x202)",
        ));
    };
    Ok(KernelInfo {
        path: path.to_path_buf(),
        source,
        format,
        release,
        size_bytes: meta.len(),
    })
}

/// An ELF must be 64-bit little-endian x86-64 to be our guest kernel.
fn check_elf(head: &[u8]) -> std::result::Result<(), String> {
    if head.len() < 20 {
        return Err("ELF header truncated".into());
    }
    if head[4] != 2 {
        return Err("a 32-bit ELF, not x86-64".into());
    }
    if head[5] != 1 {
        return Err("a big-endian ELF, not x86-64".into());
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if machine != 62 {
        return Err(format!("an ELF for machine {machine}, not x86-64 (62)"));
    }
    Ok(())
}

/// The release in a file name `vmlinux-<release>` / `vmlinuz-<release>`.
fn release_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let rel = name
        .strip_prefix("vmlinux-")
        .or_else(|| name.strip_prefix("vmlinuz-"))?;
    (!rel.is_empty()).then(|| rel.to_string())
}

/// Finds the guest kernel: `explicit` (`--kernel`), else `$ISOBOX_KERNEL`, else the newest
/// cached `<data>/kernels/vmlinux-<release>`, else one provisioned from Debian's
/// linux-image-cloud-amd64, else the host's /boot kernel. A kernel named explicitly must be
/// valid; it is never silently replaced by another.
pub fn resolve_kernel(explicit: Option<&Path>, opts: &ResolveOptions) -> Result<KernelInfo> {
    if let Some(p) = explicit {
        return inspect_kernel(p, KernelSource::Flag);
    }
    if let Some(p) = &opts.env_kernel {
        return inspect_kernel(p, KernelSource::Env);
    }
    if let Some(k) = cached_kernel(&opts.data_dir) {
        return Ok(k);
    }
    let mut tried = Vec::new();
    if opts.provision {
        match provision::provision_kernel(&opts.data_dir, opts.progress) {
            Ok(report) => return inspect_kernel(&report.vmlinux, KernelSource::Provisioned),
            Err(e) => {
                if opts.progress {
                    log::warn!("{e}");
                }
                tried.push(format!("provisioning failed ({e})"));
            }
        }
    } else {
        tried.push(format!(
            "no cached kernel in {}",
            kernels_dir(&opts.data_dir).display()
        ));
    }
    if opts.host_boot {
        match host_boot_kernel() {
            Some(Ok(k)) => return Ok(k),
            Some(Err(e)) => tried.push(e.to_string()),
            None => tried.push("no readable /boot/vmlinuz-$(uname -r)".into()),
        }
    }
    Err(MicrovmError::NoKernel(format!(
        "{}; give one with --kernel PATH or ISOBOX_KERNEL=PATH (a vmlinux or bzImage), \
         or let isobox provision one (needs apt-get and Debian's linux-image-cloud-amd64)",
        tried.join("; ")
    )))
}

/// The newest valid `vmlinux-<release>` in `<data>/kernels`, if any.
pub fn cached_kernel(data_dir: &Path) -> Option<KernelInfo> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(kernels_dir(data_dir))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinux-") && n.len() > 8)
        })
        .collect();
    found.sort_by(|a, b| version_cmp(&b.to_string_lossy(), &a.to_string_lossy()));
    found
        .iter()
        .find_map(|p| inspect_kernel(p, KernelSource::Cache).ok())
        .filter(|k| k.format == KernelFormat::Vmlinux)
}

/// The cached bzImage of `release`, kept beside its vmlinux when it was provisioned.
pub fn cached_bzimage(data_dir: &Path, release: &str) -> Option<PathBuf> {
    let p = kernels_dir(data_dir).join(format!("vmlinuz-{release}"));
    p.is_file().then_some(p)
}

fn host_boot_kernel() -> Option<Result<KernelInfo>> {
    let release = nix::sys::utsname::uname()
        .ok()?
        .release()
        .to_string_lossy()
        .into_owned();
    let path = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    std::fs::File::open(&path).ok()?;
    Some(inspect_kernel(&path, KernelSource::HostBoot))
}

/// Compares strings with runs of digits ordered by value ("6.1.0-10" > "6.1.0-9").
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then(da.cmp(db));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(
            version_cmp("vmlinux-6.1.0-10-cloud", "vmlinux-6.1.0-9-cloud"),
            Greater
        );
        assert_eq!(version_cmp("vmlinux-6.10.0", "vmlinux-6.9.0"), Greater);
        assert_eq!(version_cmp("a-01", "a-1"), Equal);
        assert_eq!(version_cmp("a", "a-1"), Less);
    }

    #[test]
    fn release_from_file_name() {
        assert_eq!(
            release_from_name(Path::new("/x/vmlinux-6.1.0-9-cloud-amd64")).as_deref(),
            Some("6.1.0-9-cloud-amd64")
        );
        assert_eq!(release_from_name(Path::new("/x/bzImage")), None);
    }
}
