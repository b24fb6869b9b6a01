//! Provisioning a guest kernel from Debian's `linux-image-cloud-amd64`: download the package
//! with apt-get (no install), follow the metapackage to the real image package, take
//! `boot/vmlinuz-*` out of it and store it, decompressed to a vmlinux, in the cache.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::bzimage;
use super::datadir::kernels_dir;
use super::deb;
use super::decompress::Compression;
use crate::error::{MicrovmError, Result};

/// The Debian metapackage that always depends on the current cloud kernel.
pub const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

/// What one provisioning did, for progress output and measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    /// The package the kernel came from ("linux-image-6.1.0-26-cloud-amd64").
    pub package: String,
    pub release: String,
    /// The stored vmlinux, `<data>/kernels/vmlinux-<release>`.
    pub vmlinux: PathBuf,
    /// The stored bzImage, `<data>/kernels/vmlinuz-<release>`.
    pub bzimage: PathBuf,
    pub deb_bytes: u64,
    pub bzimage_bytes: u64,
    pub vmlinux_bytes: u64,
    pub compression: Compression,
    pub elapsed: Duration,
}

fn step_err(step: &str, reason: impl Into<String>) -> MicrovmError {
    MicrovmError::Provision {
        step: step.to_string(),
        reason: reason.into(),
    }
}

struct Progress(bool);

impl Progress {
    fn say(&self, msg: impl AsRef<str>) {
        if self.0 {
            eprintln!("isobox: {}", msg.as_ref());
        }
    }
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1048576.0)
}

/// Downloads, unpacks and caches the current Debian cloud kernel under `data_dir`. Concurrent
/// callers serialise on a lock file, so two never write the cache at once.
pub fn provision_kernel(data_dir: &Path, progress: bool) -> Result<ProvisionReport> {
    let started = Instant::now();
    let say = Progress(progress);
    let dir = kernels_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| MicrovmError::io(format!("create {}", dir.display()), e))?;
    let _lock = lock(&dir)?;

    let work = work_dir(&dir)?;

    say.say(format!(
        "downloading {KERNEL_PACKAGE} with apt-get into {}",
        work.path().display()
    ));
    let mut pkg_deb = apt_download(KERNEL_PACKAGE, work.path(), &say)?;
    let mut package = KERNEL_PACKAGE.to_string();
    // The metapackage holds no kernel: follow its Depends to linux-image-<release>-cloud-amd64.
    if !contains_kernel_hint(&pkg_deb)? {
        let control = deb::read_control(&pkg_deb)?;
        let depends = deb::control_field(&control, "Depends").unwrap_or_default();
        let dep = deb::parse_depends(&depends)
            .into_iter()
            .find(|d| d.name.starts_with("linux-image-"))
            .ok_or_else(|| {
                step_err(
                    "reading the metapackage",
                    format!(
                        "{} depends on no linux-image-* package (Depends: {depends:?})",
                        pkg_deb.display()
                    ),
                )
            })?;
        let spec = match &dep.exact_version {
            Some(v) => format!("{}={v}", dep.name),
            None => dep.name.clone(),
        };
        say.say(format!(
            "{KERNEL_PACKAGE} depends on {spec}; downloading it"
        ));
        pkg_deb = apt_download(&spec, work.path(), &say)?;
        package = dep.name;
    }
    let deb_bytes = file_len(&pkg_deb)?;

    say.say(format!(
        "downloaded {} ({}) in {:.1} s; unpacking boot/vmlinuz-*",
        file_name(&pkg_deb),
        mib(deb_bytes),
        started.elapsed().as_secs_f64()
    ));
    let step = Instant::now();
    let bz_tmp = work.path().join("vmlinuz");
    let found = {
        let f = File::create(&bz_tmp)
            .map_err(|e| MicrovmError::io(format!("create {}", bz_tmp.display()), e))?;
        let mut w = BufWriter::new(f);
        let found = deb::extract_first(&pkg_deb, deb::is_boot_vmlinuz, &mut w)?;
        w.flush()
            .map_err(|e| MicrovmError::io(format!("write {}", bz_tmp.display()), e))?;
        found
    };
    let (inner, bzimage_bytes) = found.ok_or_else(|| {
        step_err(
            "unpacking",
            format!("{} contains no boot/vmlinuz-*", pkg_deb.display()),
        )
    })?;
    let release = inner
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    if release.contains('/') || release.starts_with('.') {
        return Err(step_err(
            "unpacking",
            format!("unexpected kernel file name {}", inner.display()),
        ));
    }

    let vmlinux = dir.join(format!("vmlinux-{release}"));
    say.say(format!(
        "unpacked {} ({}) in {:.1} s; decompressing it to {}",
        inner.display(),
        mib(bzimage_bytes),
        step.elapsed().as_secs_f64(),
        vmlinux.display()
    ));
    let step = Instant::now();
    let extracted = bzimage::extract_vmlinux(&bz_tmp, &vmlinux)?;
    let decompress_secs = step.elapsed().as_secs_f64();
    let bzimage = dir.join(format!("vmlinuz-{release}"));
    super::modules::extract(&pkg_deb, data_dir, &release)?;
    std::fs::set_permissions(&bz_tmp, std::fs::Permissions::from_mode(0o644))
        .and_then(|_| std::fs::rename(&bz_tmp, &bzimage))
        .map_err(|e| MicrovmError::io(format!("store {}", bzimage.display()), e))?;
    let report = ProvisionReport {
        package,
        release,
        vmlinux,
        bzimage,
        deb_bytes,
        bzimage_bytes,
        vmlinux_bytes: extracted.vmlinux_bytes,
        compression: extracted.compression,
        elapsed: started.elapsed(),
    };
    say.say(format!(
        "stored {} ({}, {} payload decompressed in {decompress_secs:.1} s); {:.1} s in all",
        report.vmlinux.display(),
        mib(report.vmlinux_bytes),
        report.compression,
        report.elapsed.as_secs_f64()
    ));
    Ok(report)
}

/// Unpacks the virtio-fs modules of a kernel cached before they were kept beside it, from its
/// package `linux-image-<release>`.
pub fn provision_modules(data_dir: &Path, release: &str, progress: bool) -> Result<PathBuf> {
    let say = Progress(progress);
    let dir = kernels_dir(data_dir);
    let _lock = lock(&dir)?;
    if super::modules::find(data_dir, release).is_some() {
        return Ok(super::modules::modules_dir(data_dir, release));
    }
    let work = work_dir(&dir)?;
    let package = format!("linux-image-{release}");
    say.say(format!(
        "downloading {package} for its virtio-fs modules into {}",
        work.path().display()
    ));
    let deb = apt_download(&package, work.path(), &say)?;
    super::modules::extract(&deb, data_dir, release)
}

/// Cheap test for a package that ships a kernel itself: its name says so.
fn contains_kernel_hint(deb: &Path) -> Result<bool> {
    let control = deb::read_control(deb)?;
    let name = deb::control_field(&control, "Package").unwrap_or_default();
    // Real image packages are named linux-image-<digits>…; the metapackage is not.
    Ok(name
        .strip_prefix("linux-image-")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())))
}

/// Runs `apt-get download SPEC` in `dir`, with `apt-get update` and one retry when it fails
/// (a fresh machine has no package lists). Returns the downloaded .deb.
fn apt_download(spec: &str, dir: &Path, say: &Progress) -> Result<PathBuf> {
    let before = debs_in(dir)?;
    if let Err(first) = run_apt(&["download", spec], dir, say) {
        say.say(format!(
            "apt-get download {spec} failed ({first}); running apt-get update and retrying"
        ));
        run_apt(&["update"], dir, say).map_err(|e| step_err("apt-get update", e))?;
        run_apt(&["download", spec], dir, say).map_err(|e| {
            step_err(
                &format!("apt-get download {spec}"),
                format!("{e} (before apt-get update: {first})"),
            )
        })?;
    }
    let name = spec.split('=').next().unwrap_or(spec);
    debs_in(dir)?
        .into_iter()
        .find(|p| !before.contains(p) && file_name(p).starts_with(&format!("{name}_")))
        .ok_or_else(|| {
            step_err(
                &format!("apt-get download {spec}"),
                format!("no {name}_*.deb appeared in {}", dir.display()),
            )
        })
}

fn run_apt(args: &[&str], dir: &Path, say: &Progress) -> std::result::Result<(), String> {
    let mut cmd = Command::new("apt-get");
    if nix::unistd::geteuid().is_root() {
        // The work directory is root's; downloading as root avoids apt's sandbox notice.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    // apt-get's own lines are the progress; keep stdout free for the caller's output.
    if say.0 {
        cmd.stdout(std::io::stderr()).stderr(std::io::stderr());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let tail = String::from_utf8_lossy(&out.stderr);
        let tail = tail.lines().last().unwrap_or("").trim();
        Err(format!(
            "apt-get {} exited with {}{}{}",
            args.join(" "),
            out.status,
            if tail.is_empty() { "" } else { ": " },
            tail
        ))
    }
}

fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| MicrovmError::io(format!("list {}", dir.display()), e))?;
    Ok(rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect())
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .map_err(|e| MicrovmError::io(format!("stat {}", p.display()), e))?
        .len())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A download directory in `dir`, removed when dropped.
fn work_dir(dir: &Path) -> Result<tempfile::TempDir> {
    let work = tempfile::Builder::new()
        .prefix(".provision-")
        .tempdir_in(dir)
        .map_err(|e| {
            MicrovmError::io(format!("create a work directory in {}", dir.display()), e)
        })?;
    // apt's download sandbox user must be able to enter the directory.
    let _ = std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755));
    Ok(work)
}

/// Holds `<kernels>/.lock` exclusively for the life of the returned value.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<File>> {
    let path = dir.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| MicrovmError::io(format!("open {}", path.display()), e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| MicrovmError::io(format!("lock {}", path.display()), e.into()))
}
